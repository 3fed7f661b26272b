"""Request bodies: DRF's JSON parser, held to the store's rules for values
(`kvstore.values`), so that bad input is a 400 before anything is produced, never a 500
or a record that breaks its readers."""

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from kvstore import values
from kvstore.errors import BodyTooLarge, InvalidValue


class StoreJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        text = self._text(stream, parser_context or {})
        try:
            return values.loads(text)
        except values.ValueRefused as exc:
            raise InvalidValue(exc.detail, exc.code) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None

    @staticmethod
    def _text(stream, parser_context):
        # DRF hands the stream over unread, past Django's own size check.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and _declared_length(parser_context) > limit:
            raise BodyTooLarge()  # before waiting for a body this large
        if stream is None:
            raw = b""
        else:
            raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise BodyTooLarge()
        encoding = parser_context.get("encoding") or settings.DEFAULT_CHARSET
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding}: {exc}")


def _declared_length(parser_context):
    request = parser_context.get("request")
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except (AttributeError, ValueError):
        return 0
