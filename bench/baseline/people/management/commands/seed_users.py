from django.core.management.base import BaseCommand

from people.models import User


class Command(BaseCommand):
    help = "Create users u000000 … with the same ids the store benchmark uses."

    def add_arguments(self, parser):
        parser.add_argument("count", type=int)

    def handle(self, *args, count, **options):
        User.objects.all().delete()
        User.objects.bulk_create(
            [
                User(id=f"u{i:06d}", name=f"user {i}", email=f"user{i}@example.com")
                for i in range(count)
            ],
            batch_size=5000,
        )
