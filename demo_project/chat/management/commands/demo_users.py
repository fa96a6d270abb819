"""``manage.py demo_users``: the demo's accounts (run by scripts/demo; idempotent).

alice / demo   staff and superuser: she can open the admin
bob   / demo   an ordinary user
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERS = {"alice": {"is_staff": True, "is_superuser": True}, "bob": {}}
PASSWORD = "demo"


class Command(BaseCommand):
    help = "Create the demo users alice and bob (password: demo) if they do not exist."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        for username, flags in USERS.items():
            user, created = User.objects.get_or_create(username=username, defaults=flags)
            if created:
                user.set_password(PASSWORD)
                user.save()
                self.stdout.write(f"created {username} (password: {PASSWORD})")
