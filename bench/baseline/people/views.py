import uuid

from rest_framework import serializers, viewsets

from people.models import User


class UserSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)

    class Meta:
        model = User
        fields = ["id", "name", "email"]


class UserViewSet(viewsets.ModelViewSet):
    queryset = User.objects.all().order_by("id")
    serializer_class = UserSerializer

    def perform_create(self, serializer):
        serializer.save(id=uuid.uuid4().hex)
