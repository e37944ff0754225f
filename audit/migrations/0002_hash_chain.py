"""Turn the placeholder event table into the hash-chained log, and add checkpoints and nodes.

Events written before this migration are chained in id order, so no history is lost.
"""

import django.utils.timezone
from django.db import migrations, models


def chain_existing_events(apps, schema_editor):
    from audit import chain

    AuditEvent = apps.get_model("audit", "AuditEvent")
    previous = chain.GENESIS
    for seq, event in enumerate(AuditEvent.objects.order_by("id").iterator(), start=1):
        entry = chain.encode_entry(
            chain.make_entry(
                seq=seq,
                at=chain.format_time(event.at),
                actor_role=event.actor_role,
                actor_id=event.actor_id,
                action=event.action,
                subject=event.subject,
                dataset=event.dataset,
                payload=event.payload,
            )
        )
        current = chain.chain_hash(previous, chain.leaf_hash(entry))
        AuditEvent.objects.filter(pk=event.pk).update(
            seq=seq, entry=entry.decode(), prev_hash=previous.hex(), hash=current.hex()
        )
        previous = current


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="at",
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="entry",
            field=models.TextField(default=""),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(unique=True),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="subject",
            field=models.CharField(blank=True, db_index=True, max_length=200),
        ),
        migrations.AlterModelOptions(
            name="auditevent",
            options={"ordering": ["seq"]},
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tree_size", models.BigIntegerField(unique=True)),
                ("root", models.CharField(max_length=64)),
                ("chain_head", models.CharField(max_length=64)),
                ("timestamp", models.CharField(max_length=40)),
                ("signature", models.CharField(max_length=100)),
                ("key_id", models.CharField(max_length=32)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={"ordering": ["tree_size"]},
        ),
        migrations.CreateModel(
            name="AuditNode",
            fields=[
                ("pk", models.CompositePrimaryKey("level", "index", blank=True, editable=False, primary_key=True, serialize=False)),
                ("level", models.SmallIntegerField()),
                ("index", models.BigIntegerField()),
                ("hash", models.BinaryField(max_length=32)),
            ],
        ),
    ]
