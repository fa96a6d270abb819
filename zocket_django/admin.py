"""zocket_django in the Django admin."""

from django.contrib import admin

from .admin_hot import HotActorAdmin
from .hotactor import HotActor

admin.site.register(HotActor, HotActorAdmin)
