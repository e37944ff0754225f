from typing import Any

from django.db import migrations


def drop_segments(apps: Any, schema_editor: Any) -> None:
    # Segments now carry each row's upload id; they are a derived cache of the
    # contributions, so drop them and let the next compaction rebuild them.
    apps.get_model("datasets", "PoolSegment").objects.all().delete()
    apps.get_model("datasets", "Contribution").objects.update(is_compacted=False)


class Migration(migrations.Migration):
    dependencies = [("datasets", "0005_consent_closed_index")]

    operations = [migrations.RunPython(drop_segments, migrations.RunPython.noop)]
