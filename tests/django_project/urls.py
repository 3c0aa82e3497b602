from django.urls import include, path

from .shop import views

urlpatterns = [
    path("enqueue/<str:batch>/<int:count>/", views.enqueue_orders),
    path("ops/offload/", include("offload.contrib.django.urls")),
]
