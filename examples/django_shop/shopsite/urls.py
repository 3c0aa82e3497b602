from django.contrib import admin
from django.urls import include, path
from shop import views

urlpatterns = [
    path("", views.storefront, name="storefront"),
    path("order/", views.place_order, name="place_order"),
    path("admin/", admin.site.urls),
    path("ops/offload/", include("offload.contrib.django.urls")),  # the staff dashboard
]
