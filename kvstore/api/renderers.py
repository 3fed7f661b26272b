"""JSON rendering where a stored JSON `null` is a body of `null`, not an empty body."""

from rest_framework import status
from rest_framework.renderers import JSONRenderer

NO_BODY = (status.HTTP_204_NO_CONTENT, status.HTTP_304_NOT_MODIFIED)


class ValueJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if (
            data is None
            and response is not None
            and response.status_code not in NO_BODY
        ):
            return b"null"
        return super().render(data, accepted_media_type, renderer_context)
