from django.db import models


class Todo(models.Model):
    """One row per to-do item: the board actor's state lives in these rows between runs."""

    board = models.CharField(max_length=128, db_index=True)  # the actor id
    text = models.CharField(max_length=200)
    done = models.BooleanField(default=False)
    by = models.CharField(max_length=150)

    def __str__(self) -> str:
        return self.text
