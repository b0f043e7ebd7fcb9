import dataclasses

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
    settings = Settings.from_env(
        {
            "MODEL_PATH": str(tmp_path),
            "DEVICE": "CPU",
            "DTYPE": "bfloat16",
            "WORKERS": "3",
            "CPU_THREADS": "2",
            "WORKER_CLASS": "gthread",
            "ALLOW_UNBOUNDED_QUEUE": "true",
            "MAX_BATCH_SIZE": "8",
            "ENABLE_WARMUP": "false",
            "API_KEYS": "a, b,,",
            "LOG_LEVEL": "DEBUG",
            "PORT": "9000",
        }
    )
    assert settings.served_model_name == tmp_path.name
    assert (settings.device, settings.dtype, settings.workers, settings.cpu_threads) == ("cpu", "bfloat16", 3, 2)
    assert settings.worker_class == "gthread" and settings.max_batch_size == 8
    assert settings.enable_warmup is False and settings.api_keys == ("a", "b")
    assert settings.log_level == "debug" and settings.bind == "0.0.0.0:9000"


def test_model_name_overrides_directory_name(tmp_path):
    assert Settings.from_env({"MODEL_PATH": str(tmp_path), "MODEL_NAME": "mine"}).served_model_name == "mine"


def test_bind_wins_over_port():
    assert Settings.from_env({"BIND": "127.0.0.1:1234", "PORT": "9"}).bind == "127.0.0.1:1234"


def test_worker_classes_without_back_pressure_start_only_when_acknowledged():
    for worker_class in ("gthread", "sync"):
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"WORKER_CLASS": worker_class})
        assert info.value.variable == "WORKER_CLASS" and "ALLOW_UNBOUNDED_QUEUE=true" in str(info.value)
        settings = Settings.from_env({"WORKER_CLASS": worker_class, "ALLOW_UNBOUNDED_QUEUE": "true"})
        assert settings.worker_class == worker_class
    assert Settings.from_env({"WORKER_CLASS": "gevent"}).worker_class == "gevent"


@pytest.mark.parametrize(
    "variable,value",
    [
        ("DEVICE", "tpu"),
        ("DTYPE", "int4"),
        ("WORKERS", "many"),
        ("WORKERS", "-1"),
        ("CPU_THREADS", "1.5"),
        ("WORKER_CLASS", "eventlet"),
        ("MAX_BATCH_SIZE", "0"),
        ("ENABLE_WARMUP", "perhaps"),
        ("PORT", "99999"),
        ("LOG_LEVEL", "loud"),
        ("MODEL_PATH", "/no/such/dir"),
        ("MAX_BATCH_ITEMS", "0"),
    ],
)
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
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.workers = 5
    public = settings.public_dict()
    assert "secret-key" not in repr(public) and "secret-key" not in repr(settings)


# ------------------------------------------------------------------- sizing
def test_cgroup_quota_limits_the_workers(tmp_path):
    from app.sizing import cgroup_quota, cpu_budget

    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a Kubernetes limit of 1500m
    assert cgroup_quota(tmp_path) == 1.5
    budget = cpu_budget(tmp_path, affinity=8)
    assert budget.cpus == 1 and "1.5" in budget.found
    (tmp_path / "cpu.max").write_text("400000 100000\n")
    assert cpu_budget(tmp_path, affinity=8).cpus == 4
    assert cpu_budget(tmp_path, affinity=2).cpus == 2  # the affinity mask is smaller still
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None and cpu_budget(tmp_path, affinity=3).cpus == 3
    assert Settings(workers=0).resolved_workers(cpu_budget(tmp_path, affinity=3).cpus) == 3


def test_cgroup_v1_quota(tmp_path):
    from app.sizing import cgroup_quota

    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path) is None
    assert cgroup_quota(tmp_path / "nowhere") is None


def test_a_visible_gpu_means_one_worker_with_every_cpu():
    assert Settings(device="auto").resolved_workers(cpu_count=16, gpu=True) == 1
    assert Settings(device="auto").resolved_cpu_threads(cpu_count=16, gpu=True) == 16
    assert Settings(device="auto").resolved_workers(cpu_count=16, gpu=False) == 16
