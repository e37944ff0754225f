from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "cleanroom.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"
