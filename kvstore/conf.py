"""Configuration: every environment variable the store reads is read here, once, at
start.

`from_environ()` builds one frozen `StoreSettings`; Django's settings module keeps it as
`settings.KVSTORE` and the rest of the code asks `kvstore.conf.store_settings()` for it.
A missing or malformed value fails at start with `ImproperlyConfigured`, naming the
variable.
"""

import dataclasses
import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from kvstore import idempotency, keys, peers

BASE_DIR = Path(__file__).resolve().parent.parent
NAMESPACES = ("users", "kv")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
AUTH_MODES = ("off", "required")
MIN_SECRET_LENGTH = 32
# The codecs kafka-python can write (snappy, lz4 and zstd need their pinned libraries).
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class KafkaSecurity:
    """TLS and SASL settings passed to every Kafka client."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    # Kept out of repr, so Django's DEBUG error page (which shows the settings) does
    # not print it.
    sasl_password: str | None = dataclasses.field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """The store's configuration; see the README's configuration table for each
    variable."""

    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    advertised_url: str = "http://127.0.0.1:8000"
    cache_path: Path = BASE_DIR / "var" / "cache.sqlite3"
    group_id: str = "kvstore"
    topic_prefix: str = "kvstore."
    partitions: int = 6
    replication_factor: int = 1
    topic_configs: tuple[tuple[str, str], ...] = ()
    peer_allowlist: tuple[str, ...] = ()
    security: KafkaSecurity = KafkaSecurity()
    session_timeout_ms: int = 10000
    produce_timeout: float = 10.0
    apply_timeout: float = 5.0
    heartbeat_timeout: float = 5.0
    compression: str = "none"
    # The longest Prefer: wait a request may ask for (a longer one is cut to this).
    max_wait: float = 60.0
    # Open watch streams and waiting long-polls per instance (503 beyond).
    max_watches: int = 256
    watch_keepalive: float = 15.0
    # Events queued for one watch before its client counts as slow and is cut off.
    watch_buffer: int = 10000
    idempotency_window: float = float(idempotency.DEFAULT_WINDOW_S)
    namespaces: tuple[str, ...] = NAMESPACES
    auth: str = "off"
    # (sha256-hex, role) of every API key: the keys themselves are never kept.
    api_keys: tuple[tuple[str, str], ...] = ()
    # Peers send it on /api/internal/ calls, so it is kept as given (not in reprs).
    cluster_secret: str | None = dataclasses.field(default=None, repr=False)
    # An admin key this process presents to instances (kvstore_status), not one the
    # instance accepts.
    admin_key: str | None = dataclasses.field(default=None, repr=False)

    @property
    def auth_required(self):
        return self.auth == "required"

    @property
    def metrics_dir(self):
        """Where the web workers keep their metrics (PROMETHEUS_MULTIPROC_DIR):
        beside the cache, so each instance has its own."""
        return self.cache_path.with_name(self.cache_path.name + ".metrics")

    def topic(self, namespace):
        """The Kafka topic that holds `namespace`."""
        return self.topic_prefix + namespace

    def topics(self):
        return {namespace: self.topic(namespace) for namespace in self.namespaces}


def store_settings():
    """The settings in force (tests may override `settings.KVSTORE`)."""
    from django.conf import settings

    return settings.KVSTORE


def from_environ(environ=None):
    """Build `StoreSettings` from the environment; raise ImproperlyConfigured naming a
    bad variable."""
    env = _Env(os.environ if environ is None else environ)
    defaults = StoreSettings()
    return StoreSettings(
        bootstrap_servers=env.list(
            "KAFKA_BOOTSTRAP_SERVERS", defaults.bootstrap_servers
        ),
        advertised_url=env.url("KVSTORE_ADVERTISED_URL", defaults.advertised_url),
        cache_path=Path(env.str("KVSTORE_CACHE_PATH", str(defaults.cache_path))),
        group_id=env.str("KVSTORE_GROUP_ID", defaults.group_id),
        topic_prefix=env.topic_prefix("KVSTORE_TOPIC_PREFIX", defaults.topic_prefix),
        partitions=env.int("KVSTORE_PARTITIONS", defaults.partitions, minimum=1),
        replication_factor=env.int(
            "KVSTORE_REPLICATION_FACTOR", defaults.replication_factor, minimum=1
        ),
        topic_configs=env.pairs("KVSTORE_TOPIC_CONFIGS"),
        peer_allowlist=tuple(
            _base_url(url, "KVSTORE_PEER_ALLOWLIST")
            for url in env.list("KVSTORE_PEER_ALLOWLIST", ())
        ),
        security=_security(env),
        session_timeout_ms=env.int(
            "KVSTORE_SESSION_TIMEOUT_MS", defaults.session_timeout_ms, minimum=1000
        ),
        produce_timeout=env.seconds(
            "KVSTORE_PRODUCE_TIMEOUT", defaults.produce_timeout
        ),
        apply_timeout=env.seconds("KVSTORE_APPLY_TIMEOUT", defaults.apply_timeout),
        heartbeat_timeout=env.seconds(
            "KVSTORE_HEARTBEAT_TIMEOUT", defaults.heartbeat_timeout
        ),
        **_waiting(env, defaults),
        **_auth(env),
        compression=env.choice(
            "KVSTORE_COMPRESSION", defaults.compression, COMPRESSIONS
        ),
        admin_key=env.str("KVSTORE_ADMIN_KEY", None),
    )


def _waiting(env, defaults):
    """How long requests may wait, and how many may: Prefer: wait, watches,
    idempotency keys."""
    return dict(
        max_wait=env.seconds("KVSTORE_MAX_WAIT", defaults.max_wait),
        max_watches=env.int("KVSTORE_MAX_WATCHES", defaults.max_watches, minimum=1),
        watch_keepalive=env.seconds(
            "KVSTORE_WATCH_KEEPALIVE", defaults.watch_keepalive
        ),
        watch_buffer=env.int("KVSTORE_WATCH_BUFFER", defaults.watch_buffer, minimum=1),
        idempotency_window=env.seconds(
            "KVSTORE_IDEMPOTENCY_WINDOW",
            defaults.idempotency_window,
            maximum=7 * 86400,
        ),
    )


def _auth(env):
    """The auth mode, the API keys' hashes (from KVSTORE_API_KEYS and the lines of
    KVSTORE_API_KEYS_FILE) and the cluster secret, which `required` cannot do
    without."""
    auth = env.choice("KVSTORE_AUTH", "off", AUTH_MODES)
    api_keys = [
        _key_line(item, "KVSTORE_API_KEYS") for item in env.list("KVSTORE_API_KEYS", ())
    ]
    path = env.str("KVSTORE_API_KEYS_FILE", None)
    if path is not None:
        api_keys += _key_file(path)
    secret = env.str("KVSTORE_CLUSTER_SECRET", None)
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise ImproperlyConfigured(
            f"KVSTORE_CLUSTER_SECRET must be at least {MIN_SECRET_LENGTH} characters"
        )
    if auth == "required" and secret is None:
        raise ImproperlyConfigured(
            "KVSTORE_AUTH=required needs KVSTORE_CLUSTER_SECRET, the same random value "
            "on every instance, so peers can call each other's /api/internal/ (make "
            "one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return {"auth": auth, "api_keys": tuple(api_keys), "cluster_secret": secret}


def _key_line(text, where):
    try:
        return keys.parse_line(text)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from None


def _key_file(path):
    """(sha256-hex, role) of each `role:sha256-hex` line; blank lines and lines
    starting with # are skipped."""
    try:
        with open(path, encoding="utf-8") as lines:
            return [
                _key_line(text, f"KVSTORE_API_KEYS_FILE {path} line {number}")
                for number, text in enumerate(lines, 1)
                if text.strip() and not text.lstrip().startswith("#")
            ]
    except OSError as exc:
        raise ImproperlyConfigured(
            f"KVSTORE_API_KEYS_FILE: cannot read {path}: {exc.strerror}"
        ) from None


def _security(env):
    security = KafkaSecurity(
        protocol=env.choice("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", SECURITY_PROTOCOLS),
        sasl_mechanism=env.choice("KAFKA_SASL_MECHANISM", None, SASL_MECHANISMS),
        sasl_username=env.str("KAFKA_SASL_USERNAME", None),
        sasl_password=env.str("KAFKA_SASL_PASSWORD", None),
        ssl_cafile=env.file("KAFKA_SSL_CAFILE"),
        ssl_certfile=env.file("KAFKA_SSL_CERTFILE"),
        ssl_keyfile=env.file("KAFKA_SSL_KEYFILE"),
    )
    if security.protocol.startswith("SASL") and not (
        security.sasl_mechanism
        and security.sasl_username
        and security.sasl_password is not None
    ):
        raise ImproperlyConfigured(
            f"KAFKA_SECURITY_PROTOCOL={security.protocol} needs KAFKA_SASL_MECHANISM, "
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    if security.ssl_keyfile and not security.ssl_certfile:
        raise ImproperlyConfigured(
            "KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE"
        )
    return security


def _base_url(value, name):
    url = peers.base_url(value)
    if url is None:
        raise ImproperlyConfigured(
            f"{name}: {value!r} is not a base URL like http://host:port"
        )
    return url


def default_hosts(settings):
    """Django's ALLOWED_HOSTS when DJANGO_ALLOWED_HOSTS is unset: the advertised URL's
    host and this machine's loopback names."""
    advertised = peers.host(settings.advertised_url)
    if ":" in advertised:
        advertised = f"[{advertised}]"
    return [advertised, "localhost", "127.0.0.1", "[::1]"]


class _Env:
    """Typed access to environment variables; an empty value counts as unset."""

    def __init__(self, environ):
        self.environ = environ

    def str(self, name, default):
        value = self.environ.get(name, "").strip()
        return value if value else default

    def _number(self, name, convert, what):
        """The variable converted with `convert`, or None when unset;
        ImproperlyConfigured if malformed."""
        raw = self.str(name, None)
        if raw is None:
            return None
        try:
            return convert(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be {what}, not {raw!r}") from None

    def int(self, name, default, minimum):
        value = self._number(name, int, "a whole number")
        if value is None:
            return default
        if value < minimum:
            raise ImproperlyConfigured(
                f"{name} must be at least {minimum}, not {value}"
            )
        return value

    def seconds(self, name, default, maximum=3600):
        value = self._number(name, float, "a number of seconds")
        if value is None:
            return default
        if not 0 < value <= maximum:
            raise ImproperlyConfigured(
                f"{name} must be more than 0 and at most {maximum} seconds, not "
                f"{value}"
            )
        return value

    def list(self, name, default):
        raw = self.str(name, None)
        if raw is None:
            return tuple(default)
        items = tuple(item.strip() for item in raw.split(",") if item.strip())
        if not items:
            raise ImproperlyConfigured(f"{name} is set but lists nothing")
        return items

    def choice(self, name, default, choices):
        value = self.str(name, default)
        if value is not None and value not in choices:
            raise ImproperlyConfigured(
                f"{name} must be one of {', '.join(choices)}, not {value!r}"
            )
        return value

    def file(self, name):
        """A path to a readable file, or None when unset."""
        path = self.str(name, None)
        if path is not None and not os.access(path, os.R_OK):
            raise ImproperlyConfigured(f"{name}: cannot read {path}")
        return path

    def url(self, name, default):
        return _base_url(self.str(name, default), name)

    def topic_prefix(self, name, default):
        value = self.environ.get(name, default)
        if not _TOPIC_NAME.match(value) or len(value) > 200:
            raise ImproperlyConfigured(
                f"{name}: {value!r} may hold only letters, digits, '.', '_' and '-'"
            )
        return value

    def pairs(self, name):
        pairs = []
        for item in self.list(name, ()):
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ImproperlyConfigured(
                    f"{name} takes key=value pairs separated by commas, not {item!r}"
                )
            pairs.append((key.strip(), value.strip()))
        return tuple(pairs)
