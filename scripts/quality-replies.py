#!/usr/bin/env python3
"""Builds a labelled set from conversation structure alone (free labels) for the quality harness.

The bundled exports predate Slack threads, so a "thread" is read off the channel: a question
(a plain message with a '?' and at least 6 words) is the query, and the answers are the next
plain messages in the same channel by other people within 3 hours (at most 3, each with at
least 4 words). The question itself is excluded from the ranking.

usage: scripts/quality-replies.py EXPORT_DIR > set.jsonl
"""
import json
import os
import re
import sys


def plain(text, names):
    text = re.sub(r"<@(U\w+)(\|[^>]*)?>", lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = re.sub(r"<#C\w+\|([^>]*)>", r"#\1", text)
    text = re.sub(r"<(http[^>|]*)\|([^>]*)>", r"\2 \1", text)
    text = re.sub(r"<(http[^>]*)>", r"\1", text)
    return text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").strip()


def words(text):
    return len(re.findall(r"[A-Za-z]{2,}", re.sub(r"http\S+", "", text)))


def main(root):
    names = {u["id"]: u.get("name", u["id"]) for u in json.load(open(os.path.join(root, "users.json")))}
    channels = json.load(open(os.path.join(root, "channels.json")))
    n = 0
    for c in sorted(channels, key=lambda c: c["name"]):
        d = os.path.join(root, c["name"])
        if not os.path.isdir(d):
            continue
        msgs = []
        for f in sorted(os.listdir(d)):
            msgs.extend(json.load(open(os.path.join(d, f))))
        msgs = [m for m in msgs if m.get("type") == "message" and m.get("subtype") in (None, "file_share")]
        msgs.sort(key=lambda m: float(m["ts"]))
        for i, q in enumerate(msgs):
            text = plain(q.get("text", ""), names)
            if q.get("subtype") or "?" not in text or words(text) < 6:
                continue
            answers = []
            for m in msgs[i + 1:]:
                if float(m["ts"]) - float(q["ts"]) > 3 * 3600 or len(answers) == 3:
                    break
                if m.get("user") == q.get("user") or m.get("subtype"):
                    continue
                if words(plain(m.get("text", ""), names)) >= 4:
                    answers.append({"channel": c["id"], "ts": m["ts"]})
            if not answers:
                continue
            n += 1
            print(json.dumps({
                "id": "%s-%s" % (c["name"], q["ts"]),
                "query": text,
                "relevant": answers,
                "exclude": [{"channel": c["id"], "ts": q["ts"]}],
            }))
    print("%d queries" % n, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
