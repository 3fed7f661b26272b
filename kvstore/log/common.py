"""What every Kafka client of the store shares: connection settings and error
translation."""

import contextlib
import functools
import ssl

import kafka.errors

from kvstore.errors import KafkaTransient, MemberFenced, StoreUnavailable
from kvstore.log import access


def client_config(settings):
    """Connection settings shared by every client: bootstrap servers, TLS and SASL.

    With TLS or SASL, the first call in a process also checks that the brokers accept
    them (`access.check`), so a wrong password or an untrusted certificate is reported
    at once, naming the setting, instead of as a bootstrap timeout.
    """
    security = settings.security
    config = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "security_protocol": security.protocol,
        # Reconnect within a second of a broker coming back, not after kafka-python's 30
        # s backoff.
        "reconnect_backoff_max_ms": 1000,
    }
    if security.sasl_mechanism:
        config.update(
            sasl_mechanism=security.sasl_mechanism,
            sasl_plain_username=security.sasl_username,
            sasl_plain_password=security.sasl_password,
        )
    if security.protocol in ("SSL", "SASL_SSL"):
        # One context for the check and every client, so both judge the same files.
        config["ssl_context"] = ssl_context(security)
    access.check(settings, config.get("ssl_context"))
    return config


# kafka-python keeps metrics of its own, sensors updated on every request, that nothing
# here reads (the store's are kvstore.metrics). Off: 3 % of a web worker's GIL samples
# under PUT load and 7 % of the consumer's were those sensors (docs/PROFILES.md §9).
NO_CLIENT_METRICS = {"metrics_enabled": False}


def consumer_config(settings):
    """`client_config` plus what the store's consumers share: no client metrics."""
    return {**client_config(settings), **NO_CLIENT_METRICS}


def producer_config(settings):
    """`client_config` plus what the store's producers share: the codec, and no
    client metrics."""
    config = {**client_config(settings), **NO_CLIENT_METRICS}
    if settings.compression != "none":
        config["compression_type"] = settings.compression
    return config


@functools.lru_cache(maxsize=8)
def ssl_context(security):
    """The TLS context of `security` (a KafkaSecurity), as kafka-python would build it:
    TLS 1.2 or newer, the broker's certificate checked against KAFKA_SSL_CAFILE (or the
    system's CAs) and its host name, and the client certificate if one is set."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if security.ssl_cafile:
            context.load_verify_locations(security.ssl_cafile)
        else:
            context.load_default_certs()
    except (ssl.SSLError, OSError) as exc:
        raise StoreUnavailable(f"KAFKA_SSL_CAFILE: cannot load it: {exc}") from None
    if security.ssl_certfile:
        try:
            context.load_cert_chain(security.ssl_certfile, security.ssl_keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise StoreUnavailable(
                "KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE: cannot load the client "
                f"certificate and its key: {exc}"
            ) from None
    return context


@contextlib.contextmanager
def translated(action):
    """Re-raise kafka-python's errors as StoreUnavailable, naming the action; those
    kafka-python calls retriable (a lost connection, a moving leader or coordinator)
    as KafkaTransient."""
    try:
        yield
    except kafka.errors.FencedInstanceIdError as exc:
        raise MemberFenced(f"Kafka failed to {action}: {exc}") from exc
    except kafka.errors.SaslAuthenticationFailedError as exc:
        raise StoreUnavailable(
            f"Kafka failed to {action}: authentication failed ({exc}); check "
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        ) from exc
    except kafka.errors.KafkaError as exc:
        kind = KafkaTransient if exc.retriable else StoreUnavailable
        raise kind(f"Kafka failed to {action}: {exc}") from exc
