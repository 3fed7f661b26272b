"""What every Kafka client of the store shares: connection settings and error
translation."""

import contextlib

import kafka.errors

from kvstore.errors import StoreUnavailable


def client_config(settings):
    """Connection settings shared by every client: bootstrap servers, TLS and SASL."""
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
    for option in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(security, option):
            config[option] = getattr(security, option)
    return config


@contextlib.contextmanager
def translated(action):
    """Re-raise kafka-python's errors as StoreUnavailable, naming the action."""
    try:
        yield
    except kafka.errors.KafkaError as exc:
        raise StoreUnavailable(f"Kafka failed to {action}: {exc}") from exc
