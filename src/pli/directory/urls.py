"""The directory pages, mounted at ``/directory/``.

For the compose form ("results as you type"), two endpoints take the query in ``q``
(and an optional ``limit``, from 1 to 50, default 20), both login-required, GET only:

* ``directory:search`` → ``/directory/search.json?q=…``: JSON
  ``{"query": "…", "results": [{"kind": "mailbox"|"external", "id", "display_name",
  "profession", "specialty", "city", "address", "organisation", "rpps"}, …]}``.
  ``address`` is set for ``mailbox`` results only (what a message is sent to); ``id`` is
  the mailbox's UUID, or the national id (8+RPPS / 0+ADELI) of an external professional.
  Bad parameters: 400 with ``{"q": ["message"]}`` or ``{"limit": [...]}``.
* ``directory:results`` → ``/directory/results?q=…``: the same results as an HTML fragment
  (``<ul class="directory-results">`` of ``<li class="dir-result" data-kind data-id
  data-address data-name>``), made for ``hx-get`` with ``hx-trigger="input changed delay:250ms"``.
"""

from django.urls import path

from pli.directory import views

app_name = "directory"

urlpatterns = [
    path("", views.index, name="index"),
    path("results", views.results, name="results"),
    path("search.json", views.search_json, name="search"),
]
