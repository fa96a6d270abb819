from django.contrib import admin

from .models import Todo


@admin.register(Todo)
class TodoAdmin(admin.ModelAdmin):
    list_display = ("text", "done", "by", "board")
    list_filter = ("board", "done")
