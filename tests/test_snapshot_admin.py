"""The snapshot admin: search, filter, pretty and read-only state."""

from zocket_django.models import Snapshot


def make_snapshots():
    Snapshot.objects.create(actor="chat", actor_id="lobby", state={"messages": [{"user": "ada", "text": "<b>hi</b>"}]})
    Snapshot.objects.create(actor="chat", actor_id="kitchen", state={"messages": []}, version=4)
    Snapshot.objects.create(actor="counter", actor_id="lobby", state={"count": 3}, version=3)


def test_search_and_filter(admin_client):
    make_snapshots()

    def shown(**query):
        response = admin_client.get("/admin/zocket_django/snapshot/", query)
        assert response.status_code == 200
        return [(s.actor, s.actor_id) for s in response.context["cl"].result_list]

    assert shown(q="lobby") == [("chat", "lobby"), ("counter", "lobby")]
    assert shown(q="kitch") == [("chat", "kitchen")]
    assert shown(actor="chat") == [("chat", "kitchen"), ("chat", "lobby")]


def test_the_state_is_pretty_escaped_and_read_only(admin_client):
    make_snapshots()
    snapshot = Snapshot.objects.get(actor="chat", actor_id="lobby")
    page = admin_client.get(f"/admin/zocket_django/snapshot/{snapshot.pk}/change/").content.decode()
    assert "&quot;messages&quot;: [\n    {\n" in page  # indented JSON
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page
    assert "<textarea" not in page and 'name="_save"' not in page
    assert admin_client.post(f"/admin/zocket_django/snapshot/{snapshot.pk}/change/", {}).status_code == 403
    assert admin_client.get("/admin/zocket_django/snapshot/add/").status_code == 403
