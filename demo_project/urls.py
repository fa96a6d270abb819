from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import TemplateView


def page(template_name: str):
    return TemplateView.as_view(template_name=template_name)


urlpatterns = [
    path("", page("index.html"), name="index"),
    path("counter/", page("counter/counter.html"), name="counter"),
    path("chat/", page("chat/chat.html"), name="chat"),
    path("board/", page("board/board.html"), name="board"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
