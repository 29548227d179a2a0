"""Release 2.0 of the process workflows, frozen: the implementation runs started on releases 1.0 and 2.0 keep
for their whole life (their commands must never change). Each process's entry in workflows/ asks the release-3
patch first and hands a run without it to the class here. Never edit these modules; delete them once no run
started before release 3 is open (docs/versioning.md)."""
