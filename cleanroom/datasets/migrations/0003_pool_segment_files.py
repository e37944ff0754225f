from typing import Any

from django.db import migrations, models


def drop_segments(apps: Any, schema_editor: Any) -> None:
    # Segments are a derived cache of the contributions: drop them and let the next
    # compaction rebuild them as files.
    apps.get_model("datasets", "PoolSegment").objects.all().delete()
    apps.get_model("datasets", "Contribution").objects.update(is_compacted=False)


class Migration(migrations.Migration):
    dependencies = [("datasets", "0002_contribution_is_compacted")]

    operations = [
        migrations.RunPython(drop_segments, migrations.RunPython.noop),
        migrations.RemoveField(model_name="poolsegment", name="ciphertext"),
        migrations.AddField(
            model_name="poolsegment",
            name="file_name",
            field=models.CharField(default="", max_length=200),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="poolsegment",
            name="file_name",
            field=models.CharField(max_length=200, unique=True),
        ),
        migrations.AddField(
            model_name="poolsegment",
            name="size",
            field=models.PositiveBigIntegerField(default=0),
            preserve_default=False,
        ),
    ]
