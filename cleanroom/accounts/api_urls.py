from django.urls import path

from cleanroom.accounts.api import TokenObtainApi

urlpatterns = [path("auth/token/", TokenObtainApi.as_view(), name="auth-token")]
