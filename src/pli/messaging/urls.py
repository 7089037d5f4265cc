from django.urls import path

from pli.messaging import views

app_name = "messaging"

urlpatterns = [
    path("", views.home, name="home"),
    path("compose/", views.compose, name="compose"),
    path("undo/", views.undo, name="undo"),
    path("activity/", views.activity, name="activity"),
    path("m/<uuid:message_id>/", views.thread, name="thread"),
    path("m/<uuid:message_id>/move/", views.move, name="move"),
    path("m/<uuid:message_id>/delete/", views.delete, name="delete"),
    path("m/<uuid:message_id>/unread/", views.unread, name="unread"),
    path("m/<uuid:message_id>/a/<uuid:attachment_id>/", views.attachment, name="attachment"),
    path("<uuid:mailbox_id>/search/", views.search, name="search"),
    path("<uuid:mailbox_id>/trash/empty/", views.empty_trash, name="empty_trash"),
    path("<uuid:mailbox_id>/<slug:folder>/", views.folder, name="folder"),
    path("<uuid:mailbox_id>/<slug:folder>/selection/", views.selection, name="selection"),
]
