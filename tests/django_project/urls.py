from django.urls import path

from .shop import views

urlpatterns = [
    path("enqueue/<str:batch>/<int:count>/", views.enqueue_orders),
]
