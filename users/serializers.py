"""What a user is: a non-blank name and a valid email address."""

from rest_framework import serializers


class UserSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True)
    name = serializers.CharField(
        max_length=200, allow_blank=False, trim_whitespace=True
    )
    email = serializers.EmailField(max_length=254)
