#!/usr/bin/env python3
"""Builds this Enterprise Grid fixture from the two bundled workspace exports (run from here).

Layout as Mattermost's Slack migration guide documents a Grid export: the org's listings and
org-level conversations at the top, one workspace export per folder under teams/.
"""
import json, os, shutil, glob

HERE = os.path.dirname(os.path.abspath(__file__))
VIEWER = os.path.join(HERE, "..", "slack-export-viewer-testarchive")
HOUSTON = os.path.join(HERE, "..", "slack-export-houstondatavis")
MESOS, HDV = "T0BMHLSRH", "T061A2UFL"
ORG = {"enterprise_id": "E0GRIDORG", "enterprise_name": "Grid Test Org"}


def load(*p):
    with open(os.path.join(*p)) as f:
        return json.load(f)


def dump(v, *p):
    path = os.path.join(HERE, *p)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(v, f, indent=1, ensure_ascii=False)
        f.write("\n")


def days(src, team, keep=lambda m: True):
    """Day files of a source folder, each message stamped with the team it was posted from."""
    out = {}
    for f in sorted(glob.glob(os.path.join(src, "*.json"))):
        ms = [dict(m, team=team, user_team=team, source_team=team) for m in load(f) if keep(m)]
        if ms:
            out[os.path.basename(f)] = ms
    return out


def write_days(d, *folder):
    for name, ms in d.items():
        dump(ms, *folder, name)


for entry in os.listdir(HERE):
    if entry not in ("make_fixture.py", "SOURCE.md"):
        p = os.path.join(HERE, entry)
        shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)

# Workspace 1: mesos-magellan (the slack-export-viewer test archive's team).
v_users = load(VIEWER, "users.json")
v_channels = {c["name"]: c for c in load(VIEWER, "channels.json")}
members = ["U0BMQB6JE", "U0BMYT2FL"]
dump(v_users, "teams", "mesos-magellan", "users.json")
dump([v_channels["enrique"]], "teams", "mesos-magellan", "channels.json")
dump([{"id": "G0GRIDSEC1", "name": "secret-sailors", "created": "1458208000",
       "creator": "U0BMQB6JE", "is_archived": False, "is_private": True, "members": members,
       "topic": {"value": "", "creator": "", "last_set": "0"},
       "purpose": {"value": "algorithms, quietly", "creator": "U0BMQB6JE", "last_set": "0"}}],
     "teams", "mesos-magellan", "groups.json")
dump([], "teams", "mesos-magellan", "dms.json")
dump([], "teams", "mesos-magellan", "mpims.json")
enrique = days(os.path.join(VIEWER, "enrique"), MESOS)
secret = {"2016-03-17.json": [m for m in enrique.pop("2016-03-17.json") if m.get("user") in members]}
dm = {"2016-01-15.json": enrique.pop("2016-01-15.json")}
write_days(enrique, "teams", "mesos-magellan", "enrique")
write_days(secret, "teams", "mesos-magellan", "secret-sailors")

# Workspace 2: houstondatavis, two of its channels and the users who wrote in them.
h_channels = {c["name"]: c for c in load(HOUSTON, "channels.json")}
h_days = {n: days(os.path.join(HOUSTON, n), HDV) for n in ("tools", "sci")}
posters = {m.get("user") for d in h_days.values() for ms in d.values() for m in ms}
posters |= {u for n in h_days for u in h_channels[n].get("members", [])}
h_users = [u for u in load(HOUSTON, "users.json") if u["id"] in posters]
dump(h_users, "teams", "houstondatavis", "users.json")
dump([h_channels["tools"], h_channels["sci"]], "teams", "houstondatavis", "channels.json")
for f in ("groups.json", "dms.json", "mpims.json"):
    dump([], "teams", "houstondatavis", f)
for n, d in h_days.items():
    write_days(d, "teams", "houstondatavis", n)

# The org level: every user once (hamza is a member of both workspaces), a channel shared by
# both workspaces (internal_team_ids), and a DM that names no team: its messages' `team` does.
org_users = []
for u in v_users:
    teams = [MESOS, HDV] if u["id"] == "U0BMQB6JE" else [MESOS]
    org_users.append(dict(u, enterprise_user=dict(ORG, id=u["id"], teams=teams)))
for u in h_users:
    org_users.append(dict(u, enterprise_user=dict(ORG, id=u["id"], teams=[HDV])))
dump(org_users, "org_users.json")
shared = dict(v_channels["traveling-sailor"], is_shared=True, is_org_shared=True,
              internal_team_ids=[MESOS, HDV], shared_team_ids=[MESOS, HDV])
dump([shared], "channels.json")
dump([], "groups.json")
dump([{"id": "D0GRIDDM1", "created": "1452845000", "members": members}], "dms.json")
dump([], "mpims.json")
write_days(days(os.path.join(VIEWER, "traveling-sailor"), MESOS), "traveling-sailor")
write_days(dm, "D0GRIDDM1")
