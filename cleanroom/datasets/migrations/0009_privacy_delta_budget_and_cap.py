from decimal import Decimal

from django.db import migrations, models


def delta_totals(apps, schema_editor):
    """Datasets that allowed thresholded releases get the delta total their policy implies."""
    Dataset = apps.get_model("datasets", "Dataset")
    for dataset in Dataset.objects.all():
        policy = dataset.policy or {}
        if policy.get("private_keys") is not True:
            continue
        bound = Decimal(1) / Decimal(int(policy.get("max_contributors") or 1_000_000))
        total = Decimal(str(policy.get("total_delta") or bound))
        dataset.total_delta = total.quantize(Decimal("1e-26"))
        dataset.save(update_fields=["total_delta"])


class Migration(migrations.Migration):

    dependencies = [
        ('datasets', '0008_pool_count'),
    ]

    operations = [
        migrations.AddField(
            model_name='consent',
            name='privacy_cap',
            field=models.DecimalField(blank=True, decimal_places=12, max_digits=24, null=True),
        ),
        migrations.AddField(
            model_name='dataset',
            name='spent_delta',
            field=models.DecimalField(decimal_places=26, default=Decimal('0'), max_digits=30),
        ),
        migrations.AddField(
            model_name='dataset',
            name='total_delta',
            field=models.DecimalField(decimal_places=26, default=Decimal('0'), max_digits=30),
        ),
        migrations.RunPython(delta_totals, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='dataset',
            constraint=models.CheckConstraint(condition=models.Q(('spent_delta__lte', models.F('total_delta'))), name='dataset_spent_delta_within_total'),
        ),
        migrations.AddConstraint(
            model_name='dataset',
            constraint=models.CheckConstraint(condition=models.Q(('spent_delta__gte', 0)), name='dataset_spent_delta_not_negative'),
        ),
    ]
