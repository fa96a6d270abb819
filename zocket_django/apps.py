from django.apps import AppConfig


class ZocketConfig(AppConfig):
    name = "zocket_django"
    verbose_name = "Zocket"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .registry import autodiscover

        autodiscover()
