"""Copied into a temporary project by tests/test_testing.py and run by Django's test runner:
ZocketTestMixin gives TestCase and TransactionTestCase a fresh actor state per test."""

from django.contrib.auth.models import User
from django.test import TestCase, TransactionTestCase

from zocket_django.testing import ZocketCommunicator, ZocketTestMixin


class A(ZocketTestMixin, TestCase):
    async def test_1(self):
        user = await User.objects.acreate(username="u1")
        async with ZocketCommunicator(user=user) as client:
            self.assertEqual(await client.subscribe_state("counter", "main"), ({"count": 0}, 0))
            self.assertEqual(await client.call("counter", "main", "add", amount=5), 5)

    async def test_2(self):
        async with ZocketCommunicator() as client:
            self.assertEqual(await client.subscribe_state("counter", "main"), ({"count": 0}, 0))
            self.assertEqual(await client.call("counter", "main", "add", amount=4), 4)


class B(ZocketTestMixin, TransactionTestCase):
    async def test_3(self):
        async with ZocketCommunicator() as client:
            self.assertEqual(await client.subscribe_state("counter", "main"), ({"count": 0}, 0))
            self.assertEqual(await client.call("counter", "main", "add", amount=3), 3)
