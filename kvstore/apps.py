"""The storage engine as a Django app: registers its system checks."""

from django.apps import AppConfig


class KvstoreConfig(AppConfig):
    name = "kvstore"
    verbose_name = "Kafka-native key-value store"

    def ready(self):
        from kvstore import checks  # noqa: F401  (registers the checks)
