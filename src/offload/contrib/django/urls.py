"""``path("offload/", include("offload.contrib.django.urls"))`` mounts the staff dashboard."""

from django.urls import re_path

from .dashboard import dashboard_view

app_name = "offload"
urlpatterns = [re_path(r"^(?P<path>.*)$", dashboard_view, name="dashboard")]
