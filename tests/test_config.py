import pytest

from app.config import DEFAULT_MODEL_NAME, ConfigError, Settings


def test_defaults_serve_the_packaged_model():
    settings = Settings.from_env({})
    assert settings.served_model_name == DEFAULT_MODEL_NAME
    path = settings.resolved_model_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert settings.bind == "0.0.0.0:8080"
    assert settings.device == "auto" and settings.dtype == "auto"
    assert settings.max_batch_items == 2048 and settings.worker_class == "gevent"


def test_environment_values_are_parsed(tmp_path):
    settings = Settings.from_env({
        "MODEL_PATH": str(tmp_path), "DEVICE": "CPU", "DTYPE": "bfloat16", "WORKERS": "3", "CPU_THREADS": "2",
        "WORKER_CLASS": "gthread", "MAX_BATCH_SIZE": "8", "ENABLE_WARMUP": "false", "API_KEYS": "a, b,,",
        "LOG_LEVEL": "DEBUG", "PORT": "9000",
    })
    assert settings.served_model_name == tmp_path.name
    assert (settings.device, settings.dtype, settings.workers, settings.cpu_threads) == ("cpu", "bfloat16", 3, 2)
    assert settings.worker_class == "gthread" and settings.max_batch_size == 8
    assert settings.enable_warmup is False and settings.api_keys == ("a", "b")
    assert settings.log_level == "debug" and settings.bind == "0.0.0.0:9000"


def test_model_name_overrides_directory_name(tmp_path):
    assert Settings.from_env({"MODEL_PATH": str(tmp_path), "MODEL_NAME": "mine"}).served_model_name == "mine"


def test_bind_wins_over_port():
    assert Settings.from_env({"BIND": "127.0.0.1:1234", "PORT": "9"}).bind == "127.0.0.1:1234"


@pytest.mark.parametrize("variable,value", [
    ("DEVICE", "tpu"), ("DTYPE", "int4"), ("WORKERS", "many"), ("WORKERS", "-1"), ("CPU_THREADS", "1.5"),
    ("WORKER_CLASS", "eventlet"), ("MAX_BATCH_SIZE", "0"), ("ENABLE_WARMUP", "perhaps"), ("PORT", "99999"),
    ("LOG_LEVEL", "loud"), ("MODEL_PATH", "/no/such/dir"), ("MAX_BATCH_ITEMS", "0"),
])
def test_invalid_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value})
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)


def test_thread_budget_never_exceeds_cores():
    assert Settings(workers=0).resolved_workers(cpu_count=8) == 8
    assert Settings(workers=4).resolved_cpu_threads(cpu_count=8) == 2
    assert Settings(workers=3).resolved_cpu_threads(cpu_count=2) == 1
    assert Settings(workers=1, cpu_threads=6).resolved_cpu_threads(cpu_count=2) == 6
    assert Settings(device="cuda").resolved_workers(cpu_count=16) == 1


def test_settings_are_frozen_and_secrets_masked():
    settings = Settings.from_env({"API_KEYS": "secret-key"})
    with pytest.raises(Exception):
        settings.workers = 5
    public = settings.public_dict()
    assert "secret-key" not in repr(public) and "secret-key" not in repr(settings)
