"""The AAM scale of a published folder is recorded and checked when the
folder is used as a teacher."""

import logging

import pytest
import test_reliability as rel
import yaml

from speechbrain_kd.teachers import FrozenTeacher

prep, teacher_dir = rel.prep, rel.teacher_dir
pytestmark = pytest.mark.usefixtures("one_thread")


def test_published_folder_records_its_scale(teacher_dir, tmp_path, caplog):
    text = (teacher_dir / "hyperparams.yaml").read_text()
    recorded = yaml.safe_load(
        "\n".join(x for x in text.splitlines() if x.startswith("logit_scale"))
    )
    assert recorded == {"logit_scale": 30.0}
    teacher = FrozenTeacher.from_pretrained(
        str(teacher_dir), savedir=str(tmp_path / "a"), logit_scale=30.0
    )
    assert teacher.logit_scale == 30.0
    with pytest.raises(ValueError, match="teacher_logit_scale is 32.0"):
        FrozenTeacher.from_pretrained(
            str(teacher_dir), savedir=str(tmp_path / "b"), logit_scale=32
        )
    # A folder without the record (e.g. a hub model) keeps the YAML value
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in teacher_dir.iterdir():
        (bare / path.name).symlink_to(path)
    (bare / "hyperparams.yaml").unlink()
    (bare / "hyperparams.yaml").write_text(
        "\n".join(x for x in text.splitlines() if not x.startswith("logit_"))
    )
    with caplog.at_level(logging.INFO):
        teacher = FrozenTeacher.from_pretrained(
            str(bare), savedir=str(tmp_path / "c"), logit_scale=32
        )
    assert teacher.logit_scale == 32.0
    assert "does not record its logit scale" in caplog.text
