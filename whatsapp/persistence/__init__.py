"""Keeping the WhatsApp login beyond the browser: on disk, and in PostgreSQL when configured.

The session talks only to `keeper.Keeper`; the rest, from the bottom up:

    files.py       owner-only folders, atomic and durable writes, copies with their sha256
    leveldb.py     reading Chromium's LevelDB (localStorage) without Chromium
    profile.py     the Chromium profile: the login's parts and markers, its lock, deletion
    manifest.py    a backup's manifest and names; verifying a backup folder
    broken.py      login parts a restore replaced, kept aside
    backups.py     verified backups on this machine: take, restore, prune
    archive.py     one backup as one blob (the database's format)
    record.py      the session record (linked when, to whom, clean shutdowns, restores)
    clearings.py   the durable memory that a login was ended, so that it never comes back
    strategy.py    the strategy hooks, all no-ops (as whatsapp-web.js's auth strategies)
    local.py       the local strategy: backups in the data folder, on a schedule
    database/      the database strategy: connection, store, ownership, uploader
    keeper.py      the facade: the record, the clearings, and the strategies in order
"""
