"""The ModelArts v2 (new-version training) API, through the v1 client's request machinery.

`api` builds the four requests, `discovery` pages the job search under either reading
of `offset`, `plan` decides what an incremental sync fetches, `sync` puts them together.
"""
