from decimal import Decimal

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('queries', '0003_query_run_attempt_and_heartbeat'),
    ]

    operations = [
        migrations.AddField(
            model_name='budgetcharge',
            name='delta',
            field=models.DecimalField(decimal_places=26, default=Decimal('0'), max_digits=30),
        ),
        migrations.AddField(
            model_name='query',
            name='mechanism',
            field=models.JSONField(blank=True, null=True),
        ),
    ]
