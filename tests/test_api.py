"""The HTTP API of one real instance (gunicorn + consumer process) against a real
broker."""

import concurrent.futures
import json
import uuid

import pytest

from kvstore import log, topics
from tests import rawlog
from tests.instances import (
    Instance,
    comparable,
    fast_answer,
    isolated_settings,
    wait_for,
    writing_fast,
)

MAX_MESSAGE_BYTES = 20000


@pytest.fixture(scope="module")
def instance(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(
        kafka_bootstrap, topic_configs=(("max.message.bytes", str(MAX_MESSAGE_BYTES)),)
    )
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    node = Instance(settings, tmp_path_factory.mktemp("api"), workers=3)
    node.start()
    yield node
    node.stop()


def end_offsets(instance, namespace):
    settings = instance.settings
    with log.admin(settings) as admin:
        return admin.offsets(settings.topic(namespace), range(settings.partitions))


def unique(prefix="k"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class TestUsers:
    def test_crud_round_trip(self, instance):
        created = instance.api(
            "POST", "/api/users/", json={"name": "Ann", "email": "ann@example.com"}
        )
        assert created.status_code == 201, created.text
        user = created.json()
        assert (
            user["name"] == "Ann"
            and user["email"] == "ann@example.com"
            and len(user["id"]) == 32
        )
        assert created.headers["Location"].endswith(f"/api/users/{user['id']}")
        path = f"/api/users/{user['id']}"

        got = instance.api("GET", path)
        assert got.status_code == 200 and got.json() == user
        assert got.headers["ETag"] == created.headers["ETag"]
        assert (
            instance.api("GET", path + "/").json() == user
        ), "a trailing slash is accepted"

        put = instance.api(
            "PUT", path, json={"name": "Ann B", "email": "annb@example.com"}
        )
        assert put.status_code == 200 and put.json() == {
            "id": user["id"],
            "name": "Ann B",
            "email": "annb@example.com",
        }
        patched = instance.api("PATCH", path, json={"name": "Ann C"})
        assert (
            patched.status_code == 200 and patched.json()["email"] == "annb@example.com"
        )
        assert instance.api("GET", path).json()["name"] == "Ann C", "read-your-writes"

        listed = instance.api("GET", "/api/users/?limit=1000").json()["results"]
        assert {
            "id": user["id"],
            "name": "Ann C",
            "email": "annb@example.com",
        } in listed

        assert instance.api("DELETE", path).status_code == 204
        gone = instance.api("GET", path)
        assert gone.status_code == 404 and gone.json()["code"] == "not_found"
        assert user["id"] not in [
            u["id"]
            for u in instance.api("GET", "/api/users/?limit=1000").json()["results"]
        ]

    @pytest.mark.parametrize(
        "body, field",
        [
            ({"email": "a@example.com"}, "name"),
            ({"name": "  ", "email": "a@example.com"}, "name"),
            ({"name": "A", "email": "not-an-address"}, "email"),
            ({"name": "A"}, "email"),
        ],
    )
    def test_invalid_users_are_refused_and_change_nothing(self, instance, body, field):
        before = end_offsets(instance, "users")
        response = instance.api("POST", "/api/users/", json=body)
        assert response.status_code == 400
        assert (
            response.json()["code"] == "invalid" and field in response.json()["errors"]
        )
        assert end_offsets(instance, "users") == before

    def test_malformed_json_is_400(self, instance):
        response = instance.api(
            "POST",
            "/api/users/",
            data='{"name": "A",',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400 and response.json()["code"] == "parse_error"

    @pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
    def test_unknown_id_is_404(self, instance, method):
        body = (
            {"name": "A", "email": "a@example.com"}
            if method in ("PUT", "PATCH")
            else None
        )
        before = end_offsets(instance, "users")
        response = instance.api(method, f"/api/users/{uuid.uuid4().hex}", json=body)
        assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert end_offsets(instance, "users") == before

    def test_wrong_method_is_405(self, instance):
        response = instance.api("DELETE", "/api/users/")
        assert (
            response.status_code == 405
            and response.json()["code"] == "method_not_allowed"
        )

    def test_browsable_api_renders_html(self, instance):
        response = instance.api("GET", "/api/users/", headers={"Accept": "text/html"})
        assert (
            response.status_code == 200
            and "text/html" in response.headers["Content-Type"]
        )
        assert "Django REST framework" in response.text


class TestKeyValue:
    @pytest.mark.parametrize(
        "value",
        [{"a": [1, 2, {"b": None}]}, [1, "two"], "text é€", 42, 1.5, True, None],
    )
    def test_any_json_value_round_trips(self, instance, value):
        key, body = unique(), {
            "data": json.dumps(value),
            "headers": {"Content-Type": "application/json"},
        }
        put = instance.api("PUT", f"/api/kv/{key}", **body)
        assert put.status_code == 201 and put.json() == value
        got = instance.api("GET", f"/api/kv/{key}/")
        assert got.status_code == 200 and got.json() == value
        assert (
            instance.api("PUT", f"/api/kv/{key}", **body).status_code == 200
        ), "replacing is 200"

    def test_delete_writes_a_tombstone(self, instance):
        key = unique()
        instance.api("PUT", f"/api/kv/{key}", json={"v": 1})
        deleted = instance.api("DELETE", f"/api/kv/{key}")
        assert deleted.status_code == 204
        assert instance.api("GET", f"/api/kv/{key}").status_code == 404
        assert instance.api("DELETE", f"/api/kv/{key}").status_code == 404

        partition, offset = (
            int(n) for n in deleted.headers["ETag"].strip('"').split("-")
        )
        records = rawlog.read_all(
            list(instance.settings.bootstrap_servers), instance.settings.topic("kv")
        )
        mine = [(p, o, v) for p, o, k, v in records if k == key.encode()]
        assert mine[0][2] == b'{"v":1}', "values are plain JSON"
        assert mine[-1] == (
            partition,
            offset,
            None,
        ), "a tombstone's value is null on the wire, not b'' or b'null'"

    def test_a_record_from_a_plain_producer_is_served(self, instance):
        key = unique("plain")
        rawlog.produce(
            list(instance.settings.bootstrap_servers),
            instance.settings.topic("kv"),
            [(key, '{"from": "kcat"}')],
        )
        wait_for(
            lambda: instance.api("GET", f"/api/kv/{key}").status_code == 200,
            10,
            "the record to be served",
        )
        assert instance.api("GET", f"/api/kv/{key}").json() == {"from": "kcat"}

    def test_list_pages_are_stable_and_complete(self, instance):
        prefix = unique("page")
        keys = sorted(f"{prefix}-{i:03d}" for i in range(25))
        for key in keys:
            instance.api("PUT", f"/api/kv/{key}", json=key)
        seen, url = [], f"/api/kv/?limit=7&after={prefix}"
        while url:
            page = instance.api("GET", url).json()
            seen += [
                item["key"]
                for item in page["results"]
                if item["key"].startswith(prefix)
            ]
            url = page["next"] and page["next"].replace(instance.url, "")
            if page["results"] and not page["results"][-1]["key"].startswith(prefix):
                break
        assert seen == keys

    @pytest.mark.parametrize("key", ["x" * 256, "é" * 128, "a%01b", "tab%09"])
    def test_bad_keys_are_400(self, instance, key):
        response = instance.api("PUT", f"/api/kv/{key}", json=1)
        assert response.status_code == 400 and response.json()["code"] == "invalid_key"
        assert instance.api("GET", f"/api/kv/{key}").status_code == 400

    def test_a_255_byte_key_is_fine(self, instance):
        key = "k" * 255
        assert instance.api("PUT", f"/api/kv/{key}", json=1).status_code in (200, 201)

    def test_too_large_is_413_before_producing(self, instance):
        before = end_offsets(instance, "kv")
        response = instance.api(
            "PUT", f"/api/kv/{unique()}", json="x" * MAX_MESSAGE_BYTES
        )
        assert (
            response.status_code == 413
            and response.json()["code"] == "record_too_large"
        )
        assert end_offsets(instance, "kv") == before
        assert (
            instance.api(
                "PUT", f"/api/kv/{unique()}", json="x" * (MAX_MESSAGE_BYTES - 300)
            ).status_code
            == 201
        )

    @pytest.mark.parametrize("body", ["", "{", "[1,"])
    def test_missing_or_malformed_body_is_400(self, instance, body):
        response = instance.api(
            "PUT",
            f"/api/kv/{unique()}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400 and response.json()["code"] == "parse_error"

    @pytest.mark.parametrize(
        "method, path",
        [("PATCH", "/api/kv/k"), ("POST", "/api/kv/"), ("PUT", "/api/kv/")],
    )
    def test_wrong_method_is_405(self, instance, method, path):
        assert instance.api(method, path, json=1).status_code == 405


class TestConditionalWrites:
    def test_if_match(self, instance):
        key = f"/api/kv/{unique()}"
        first = instance.api("PUT", key, json=1)
        stale = first.headers["ETag"]
        second = instance.api("PUT", key, json=2, headers={"If-Match": stale})
        assert second.status_code == 200
        refused = instance.api("PUT", key, json=3, headers={"If-Match": stale})
        assert (
            refused.status_code == 412
            and refused.json()["current_version"] == second.headers["ETag"]
        )
        assert instance.api("GET", key).json() == 2
        assert (
            instance.api("DELETE", key, headers={"If-Match": stale}).status_code == 412
        )
        assert (
            instance.api(
                "DELETE", key, headers={"If-Match": second.headers["ETag"]}
            ).status_code
            == 204
        )

    def test_if_none_match_star_creates_only(self, instance):
        key = f"/api/kv/{unique()}"
        assert (
            instance.api("PUT", key, json=1, headers={"If-None-Match": "*"}).status_code
            == 201
        )
        assert (
            instance.api("PUT", key, json=2, headers={"If-None-Match": "*"}).status_code
            == 412
        )
        assert instance.api("GET", key).json() == 1

    def test_get_if_none_match_is_304(self, instance):
        key = f"/api/kv/{unique()}"
        etag = instance.api("PUT", key, json=1).headers["ETag"]
        assert (
            instance.api("GET", key, headers={"If-None-Match": etag}).status_code == 304
        )

    def test_concurrent_writers_with_the_same_if_match_never_both_win(self, instance):
        key = f"/api/kv/{unique()}"
        for round_ in range(5):
            etag = (
                instance.api("GET", key).headers.get("ETag")
                or instance.api("PUT", key, json=-1).headers["ETag"]
            )
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = list(
                    pool.map(
                        lambda n: instance.api(
                            "PUT", key, json=[round_, n], headers={"If-Match": etag}
                        ).status_code,
                        range(8),
                    )
                )
            assert sorted(answers) == [200] + [412] * 7, answers

    def test_concurrent_patches_lose_no_update(self, instance):
        created = instance.api(
            "POST", "/api/users/", json={"name": "n", "email": "c@example.com"}
        ).json()
        path = f"/api/users/{created['id']}"

        def rename(n):
            while True:
                current = instance.api("GET", path)
                answer = instance.api(
                    "PATCH",
                    path,
                    json={"name": f"{current.json()['name']}+{n}"},
                    headers={"If-Match": current.headers["ETag"]},
                )
                if answer.status_code == 200:
                    return
                assert answer.status_code == 412

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(rename, range(6)))
        assert sorted(instance.api("GET", path).json()["name"].split("+")[1:]) == [
            str(n) for n in range(6)
        ]


class TestHealth:
    def test_healthz_and_readyz(self, instance):
        assert instance.api("GET", "/healthz").json() == {"status": "ok"}
        ready = instance.api("GET", "/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["partitions"] == 6

    def test_unknown_url_is_json_404(self, instance):
        response = instance.api("GET", "/nope")
        assert (
            response.status_code == 404
            and json.loads(response.text)["code"] == "not_found"
        )


@pytest.mark.parametrize(
    "method, unknown", [("GET", False), ("PUT", True), ("DELETE", True)]
)
def test_a_500_claims_nothing_about_a_write(rf, method, unknown):
    """An uncaught error after a write may come after its record reached Kafka."""
    from kvstore.api.handlers import server_error

    answer = server_error(rf.generic(method, "/api/kv/k"))
    body = json.loads(answer.content)
    assert answer.status_code == 500 and body["code"] == "server_error"
    assert ("not known" in body["detail"]) is unknown


class TestFastPath:
    """A plain JSON GET of one key is answered below Django (kvstore.api.fast) with
    exactly Django's answer: same status, body and headers, but for its own timing."""

    comparable = staticmethod(comparable)

    @staticmethod
    def fast(answer):
        return answer.headers["Server-Timing"].endswith(", fast")

    @staticmethod
    def fast_answer(instance, path, headers=None):
        return fast_answer(lambda: instance.api("GET", path, headers=headers or {}))

    @pytest.mark.parametrize(
        "namespace, value",
        [("kv", {"a": [1, "é", None], "b": 1.5}), ("kv", None), ("kv", "\u2028")],
    )
    def test_a_plain_get_is_django_s_answer_served_faster(
        self, instance, namespace, value
    ):
        key = unique("fast")
        body = {
            "data": json.dumps(value),
            "headers": {"Content-Type": "application/json"},
        }
        assert instance.api("PUT", f"/api/{namespace}/{key}", **body).ok
        answer = self.fast_answer(instance, f"/api/{namespace}/{key}")
        django = instance.api("GET", f"/api/{namespace}/{key}?consistency=cache")
        assert not self.fast(django)
        assert self.comparable(answer) == self.comparable(django)
        assert answer.json() == value

    def test_users_are_represented_as_the_view_does(self, instance):
        made = instance.api(
            "POST", "/api/users/", json={"name": "Fay", "email": "fay@example.com"}
        ).json()
        path = f"/api/users/{made['id']}"
        answer = self.fast_answer(instance, path)
        django = instance.api("GET", path + "?consistency=cache")
        assert self.comparable(answer) == self.comparable(django)
        assert answer.json() == made

    @pytest.mark.parametrize(
        "headers",
        [{"Accept": "text/html"}, {"If-None-Match": '"0-0"'}, {"Prefer": "wait=1"}],
    )
    def test_anything_but_plain_is_django_s(self, instance, headers):
        key = unique("fast")
        instance.api("PUT", f"/api/kv/{key}", json=1)
        for _ in range(2):
            instance.api("GET", f"/api/kv/{key}")
        answer = instance.api("GET", f"/api/kv/{key}", headers=headers)
        assert not self.fast(answer)

    def test_a_read_your_writes_get_is_fast_once_the_cache_reflects_it(self, instance):
        """The routing client sends Kvstore-Min-Position with every GET: answered below
        Django when the cache reflects it already, by Django (which waits, or refuses)
        otherwise."""
        key = unique("fast")
        written = instance.api("PUT", f"/api/kv/{key}", json=1)
        position = written.headers["Kvstore-Position"]
        partition, offset = map(int, position.split(":")[1:])
        reached = {"Kvstore-Min-Position": position}
        answer = self.fast_answer(instance, f"/api/kv/{key}", reached)
        django = instance.api(
            "GET", f"/api/kv/{key}?consistency=cache", headers=reached
        )
        assert not self.fast(django)
        assert self.comparable(answer) == self.comparable(django)
        ahead = {
            "Kvstore-Min-Position": f"kv:{partition}:{offset + 1000}",
            "Prefer": "wait=0",
        }
        waited = instance.api("GET", f"/api/kv/{key}", headers=ahead)
        assert waited.status_code == 503 and not self.fast(waited)
        assert waited.json()["code"] == "not_caught_up"
        ahead.pop("Prefer")  # without Prefer, not plain only by its position
        waited = instance.api("GET", f"/api/kv/{key}", headers=ahead)
        assert waited.status_code == 503 and not self.fast(waited)
        assert waited.json()["code"] == "not_caught_up"
        for bad in ("kv:99:1", "users:0:1", "kv:zz"):
            refused = instance.api(
                "GET", f"/api/kv/{key}", headers={"Kvstore-Min-Position": bad}
            )
            assert refused.status_code == 400 and not self.fast(refused), bad
            assert refused.json()["code"] == "invalid_position"

    def test_errors_stay_django_s(self, instance):
        for _ in range(2):
            missing = instance.api("GET", f"/api/kv/{unique('none')}")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        assert not self.fast(missing)

    # A PUT the fast path makes is plain JSON; one Django makes differs only by a
    # preference no write acts on, which takes it off the fast path.
    PLAIN_PUT = {"Content-Type": "application/json"}
    DJANGO_PUT = {**PLAIN_PUT, "Prefer": "return=representation"}

    @classmethod
    def put(cls, instance, path, value, headers=None):
        body = json.dumps(value)
        return instance.api("PUT", path, data=body, headers=headers or cls.PLAIN_PUT)

    @staticmethod
    def mine(answer):
        """`comparable` without what names the record (its version and position)."""
        status, content, headers = comparable(answer)
        own = ("etag", "kvstore-position")
        return status, content, {k: v for k, v in headers.items() if k not in own}

    @pytest.mark.parametrize("created", [True, False])
    def test_a_plain_put_is_django_s_answer_written_faster(self, instance, created):
        value = {"a": [1, "é", None], "b": 1.5}
        key = unique("fastput")
        if not created:
            self.put(instance, f"/api/kv/{key}", 0)
        path = (
            (lambda: f"/api/kv/{unique('fastput')}")
            if created
            else (lambda: f"/api/kv/{key}")
        )
        answer = fast_answer(lambda: self.put(instance, path(), value))
        django = self.put(instance, path(), value, self.DJANGO_PUT)
        assert not self.fast(django)
        assert answer.status_code == (201 if created else 200)
        assert self.mine(answer) == self.mine(django)
        assert answer.json() == value
        partition, offset = answer.headers["ETag"].strip('"').split("-")
        assert answer.headers["Kvstore-Position"] == f"kv:{partition}:{offset}"

    def test_a_fast_write_is_read_back_with_its_version(self, instance):
        key = unique("fastput")
        answer = fast_answer(lambda: self.put(instance, f"/api/kv/{key}", [key]))
        read = instance.api("GET", f"/api/kv/{key}")
        assert read.json() == [key] and read.headers["ETag"] == answer.headers["ETag"]

    @pytest.mark.parametrize(
        "headers, body",
        [
            ({"If-Match": "*"}, "1"),
            ({"If-None-Match": "*"}, "1"),
            ({"Idempotency-Key": "fast-idem"}, "1"),
            ({"Kvstore-Min-Position": "kv:0:0"}, "1"),
            ({"Accept": "text/html"}, "1"),
            ({"Content-Type": "text/plain"}, "1"),
            ({}, "{"),
            ({}, ""),
            ({}, "[NaN]"),
        ],
    )
    def test_a_put_that_is_not_plain_is_django_s(self, instance, headers, body):
        writing_fast(instance)
        before = end_offsets(instance, "kv")
        headers = {**self.PLAIN_PUT, **headers}
        for _ in range(6):
            answer = instance.api(
                "PUT", f"/api/kv/{unique('slow')}", data=body, headers=headers
            )
            assert not self.fast(answer), (headers, body, answer.status_code)
        if answer.status_code >= 400:
            assert end_offsets(instance, "kv") == before  # refused: nothing written

    def test_users_are_written_through_the_view_s_own_hooks(self, instance):
        """users validates through its serializer and merges nothing on PUT; its view
        says the fast path may run those hooks (`fast_writes`)."""
        made = instance.api(
            "POST", "/api/users/", json={"name": "Gil", "email": "gil@example.com"}
        ).json()
        path = f"/api/users/{made['id']}"
        value = {"name": "Gil", "email": "g@example.org", "id": "ignored"}
        answer = fast_answer(lambda: self.put(instance, path, value))
        django = self.put(instance, path, value, self.DJANGO_PUT)
        assert not self.fast(django)
        assert self.mine(answer) == self.mine(django)
        assert answer.json() == {
            "id": made["id"],
            "name": "Gil",
            "email": "g@example.org",
        }
        before = end_offsets(instance, "users")
        for bad in ({"name": "Gil", "email": "not an address"}, {"name": "Gil"}):
            refused = self.put(instance, path, bad)
            assert refused.status_code == 400 and not self.fast(refused)
            assert refused.json()["code"] == "invalid"
        missing = self.put(instance, f"/api/users/{unique('nobody')}", value)
        assert missing.status_code == 404  # PUT changes a user, never creates one
        assert end_offsets(instance, "users") == before

    def test_an_outcome_it_cannot_answer_is_django_s_answer_written_once(
        self, instance
    ):
        """A write the fast path made and whose outcome it has no answer for (here an
        error: the value is too large for the topic) is answered by Django exactly as
        Django answers it, and is never made again."""
        writing_fast(instance)
        before = end_offsets(instance, "kv")
        large = "x" * MAX_MESSAGE_BYTES
        answer = self.put(instance, f"/api/kv/{unique('big')}", large)
        django = self.put(instance, f"/api/kv/{unique('big')}", large, self.DJANGO_PUT)
        assert self.fast(answer) and not self.fast(django)
        assert answer.status_code == 413
        assert comparable(answer) == comparable(django)
        assert end_offsets(instance, "kv") == before
        timing = answer.headers["Server-Timing"]
        assert "route;dur=" in timing and "total;dur=" in timing

    def test_every_fast_write_is_counted_once(self, instance):
        writing_fast(instance)

        def written():
            text = instance.api("GET", "/metrics").text
            return sum(
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith("kvstore_requests_total{")
                and 'namespace="kv"' in line
                and 'method="PUT"' in line
            )

        before = written()
        answers = [
            self.put(instance, f"/api/kv/{unique('count')}", 1) for _ in range(5)
        ]
        answers.append(
            self.put(instance, f"/api/kv/{unique('big')}", "x" * MAX_MESSAGE_BYTES)
        )
        assert all(self.fast(answer) for answer in answers)
        assert written() - before == 6

    def test_every_fast_answer_is_counted(self, instance):
        key = unique("fast")
        instance.api("PUT", f"/api/kv/{key}", json=1)
        instance.api("GET", f"/api/kv/{key}")

        def served():
            text = instance.api("GET", "/metrics").text
            line = next(
                line
                for line in text.splitlines()
                if line.startswith("kvstore_requests_total{")
                and 'namespace="kv"' in line
                and 'method="GET"' in line
                and 'status="200"' in line
            )
            return float(line.split()[-1])

        before = served()
        answers = [instance.api("GET", f"/api/kv/{key}") for _ in range(5)]
        assert all(self.fast(answer) for answer in answers)
        assert served() - before == 5


def test_only_views_whose_hooks_it_may_run_are_written_below_django():
    from kvstore.api.fastwrite import writes_below_django
    from kvstore.api.views import KeyValueViewSet, NamespaceViewSet
    from users.views import UserViewSet

    class ReadsTheUser(NamespaceViewSet):
        def to_value(self, request, partial=False):
            return {"by": str(request.user), **request.data}

    class SaysItDoesNot(ReadsTheUser):
        fast_writes = True

    class WritesItself(NamespaceViewSet):
        fast_writes = True

        def update(self, request, key, partial=False):
            raise NotImplementedError

    assert writes_below_django(KeyValueViewSet) and writes_below_django(UserViewSet)
    assert not writes_below_django(ReadsTheUser)
    assert writes_below_django(SaysItDoesNot)  # its author's word
    assert not writes_below_django(WritesItself)
