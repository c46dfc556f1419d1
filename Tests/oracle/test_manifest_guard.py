"""Issue 14, item 7: a fixture manifest with no entry fails the tests that loop over it,
instead of letting them pass on nothing."""
import json

import pytest

from conftest import manifest


def test_an_empty_manifest_is_an_error(tmp_path):
    for empty in ([], {"entries": []}):
        path = tmp_path / "MANIFEST.json"
        path.write_text(json.dumps(empty))
        with pytest.raises(ValueError, match="lists no fixture"):
            manifest(path)


def test_a_missing_manifest_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        manifest(tmp_path / "MANIFEST.json")


def test_the_committed_manifests_list_fixtures():
    from conftest import FIXTURES
    for path in [FIXTURES / "MANIFEST.json", FIXTURES / "keras_h5" / "MANIFEST.json", FIXTURES / "torch" / "MANIFEST.json"]:
        assert manifest(path), path
