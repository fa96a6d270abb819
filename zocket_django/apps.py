from django.apps import AppConfig


class ZocketConfig(AppConfig):
    name = "zocket_django"
    verbose_name = "Zocket"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks
        from .identity import connect_signals
        from .registry import autodiscover

        checks.register()
        autodiscover()
        connect_signals()  # logouts, password and permission changes reach open sockets
