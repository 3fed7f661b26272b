"""Before the first Kafka client: are this store's TLS and SASL settings accepted?

kafka-python retries a refused TLS handshake or SASL login during its bootstrap until the
bootstrap timeout, and then reports only that it could not bootstrap (or, racing the
broker's close, a lost socket). One direct connection with a deadline tells the cause at
once, so the store stops within seconds with a message that names the setting to fix.
"""

import socket
import ssl
import time

import kafka.errors
from kafka.net.sasl import get_sasl_mechanism
from kafka.protocol.metadata import ApiVersionsRequest
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from kvstore.errors import StoreUnavailable

PROBE_TIMEOUT = 5.0
# OpenSSL's reasons for an alert the broker sent about the client's certificate.
_CERTIFICATE_REQUIRED = ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE")
_CERTIFICATE_REFUSED = (
    "UNKNOWN_CA",
    "BAD_CERTIFICATE",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_EXPIRED",
    "DECRYPT_ERROR",
)
# A TLS alert record: what a TLS listener answers to a plaintext request.
_TLS_ALERT = b"\x15\x03"
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")

_accepted = set()  # (bootstrap servers, KafkaSecurity) that passed once in this process


class _Refused(Exception):
    """The broker refused this client's settings; the message names the setting."""


def check(settings, ssl_context):
    """Raise StoreUnavailable naming the setting if the brokers refuse this client's TLS
    or SASL settings. Return quietly when they accept them, and also when no broker
    can be asked (an unreachable cluster is the clients' own timeout to report).
    """
    key = (settings.bootstrap_servers, settings.security)
    if settings.security.protocol == "PLAINTEXT" or key in _accepted:
        return
    deadline = time.monotonic() + PROBE_TIMEOUT
    for address in settings.bootstrap_servers:
        try:
            _Probe(address, settings.security, ssl_context, deadline).run()
        except _Refused as exc:
            raise StoreUnavailable(str(exc)) from None
        except (OSError, ValueError, kafka.errors.KafkaError):
            continue  # refused, timed out or closed: ask the next broker
        _accepted.add(key)
        return


class _Probe:
    """One connection to one broker: TLS handshake, then SASL login or one request."""

    def __init__(self, address, security, ssl_context, deadline):
        self.address, self.security = address, security
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.ssl_context, self.deadline = ssl_context, deadline
        self.protocol = KafkaProtocol(client_id="kvstore-preflight")

    def run(self):
        sock = socket.create_connection((self.host, self.port), self._remaining())
        try:
            if self.ssl_context is not None:
                sock = self._tls(sock)
            if self.security.sasl_mechanism:
                self._login(sock)
            else:
                # With mutual TLS the broker judges the client certificate only after
                # the client's side of the handshake: its verdict comes with this answer.
                self._ask(sock, ApiVersionsRequest(version=0))
        except ssl.SSLError as exc:
            self._tls_refused(exc)
            raise
        finally:
            sock.close()

    def _tls(self, sock):
        try:
            return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
                raise _Refused(
                    f"KAFKA_BOOTSTRAP_SERVERS: the certificate of the broker at "
                    f"{self.address} is not valid for {self.host} ({exc.verify_message})"
                ) from None
            raise _Refused(
                f"KAFKA_SSL_CAFILE: the certificate of the broker at {self.address} is "
                f"not trusted ({exc.verify_message})"
            ) from None

    def _tls_refused(self, exc):
        """Raise _Refused for an SSL error that is the broker's verdict, not a
        mishap."""
        reason = exc.reason or ""
        if any(word in reason for word in _NOT_TLS):
            raise _Refused(
                f"KAFKA_SECURITY_PROTOCOL={self.security.protocol}: the listener at "
                f"{self.address} does not speak TLS ({reason})"
            ) from None
        if "ALERT" not in reason:
            return
        if not self.security.ssl_certfile or any(
            word in reason for word in _CERTIFICATE_REQUIRED
        ):
            raise _Refused(
                f"KAFKA_SSL_CERTFILE: the broker at {self.address} requires a client "
                f"certificate it trusts (mutual TLS; it answered {reason})"
            ) from None
        if any(word in reason for word in _CERTIFICATE_REFUSED):
            raise _Refused(
                f"KAFKA_SSL_CERTFILE: the broker at {self.address} does not accept the "
                f"client certificate ({reason})"
            ) from None

    def _login(self, sock):
        name, user = self.security.sasl_mechanism, self.security.sasl_username
        offered = self._ask(sock, SaslHandshakeRequest(mechanism=name, version=1))
        if name not in offered.mechanisms:
            raise _Refused(
                f"KAFKA_SASL_MECHANISM: the broker at {self.address} does not offer "
                f"{name} (it offers {', '.join(offered.mechanisms) or 'nothing'})"
            )
        mechanism = get_sasl_mechanism(name)(
            host=self.host,
            security_protocol=self.security.protocol,
            sasl_mechanism=name,
            sasl_plain_username=user,
            sasl_plain_password=self.security.sasl_password,
        )
        while not mechanism.is_done():
            token = mechanism.auth_bytes()
            answer = self._ask(sock, SaslAuthenticateRequest(token, version=1))
            if answer.error_code:
                raise _Refused(
                    f"KAFKA_SASL_PASSWORD: authentication failed for user {user!r} "
                    f"({name}) at {self.address}: {answer.error_message} (check "
                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD)"
                )
            mechanism.receive(answer.auth_bytes)

    def _ask(self, sock, request):
        """Send one request and read its answer (blocking, within the deadline)."""
        self.protocol.send_request(request)
        sock.settimeout(self._remaining())
        sock.sendall(self.protocol.send_bytes())
        while True:
            sock.settimeout(self._remaining())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{self.address} closed the connection")
            if self.ssl_context is None and data[:2] == _TLS_ALERT:
                raise _Refused(
                    f"KAFKA_SECURITY_PROTOCOL={self.security.protocol}: the listener at "
                    f"{self.address} speaks TLS (it answered with a TLS alert)"
                )
            answers = self.protocol.receive_bytes(data)
            if answers:
                return answers[0][1]

    def _remaining(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no answer from {self.address} in time")
        return remaining
