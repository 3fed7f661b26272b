"""The users app: a small client of the store's repository."""

from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"
