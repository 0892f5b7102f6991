"""The evaluation protocol (DESIGN.md): the temporal split and the ranking metrics. Pure
functions over frames, below every stage that trains, tunes or reports."""
