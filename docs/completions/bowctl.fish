# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_bowctl_global_optspecs
    string join \n json h/help V/version
end

function __fish_bowctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_bowctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_bowctl_using_subcommand
    set -l cmd (__fish_bowctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c bowctl -n "__fish_bowctl_needs_command" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bowctl -n "__fish_bowctl_needs_command" -s V -l version -d 'Print version'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "inspect" -d 'Validate the log of a device or image and dump its chain. Writes nothing'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "restore" -d 'Validate the log, then roll the device back to its checkpoint (offline)'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "status" -d 'Show the live state of one bow device, or of all of them'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "checkpoint" -d 'Trim the mounted filesystem (FITRIM), then start a checkpoint (state 1)'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "commit" -d 'Commit a checkpoint (state 2): keep the new data, drop the backups, and close the pending update in the record'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "start" -d 'Request a checkpoint for the next boots: run when an update is installed. Writes the record; touches no device'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "boot" -d 'The one call an init script makes at every boot, before the data is used: rolls back, or sets up bow and checkpoints, or just mounts'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "pending" -d 'Whether an update is pending (vdc\'s needsCheckpoint): exit 0 if so, 3 if not'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "checkpointing" -d 'Whether a bow device is under a checkpoint, in state 1 (vdc\'s isCheckpointing): exit 0 if so, 3 if not'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "abort" -d 'Request a rollback at the next boot (the update failed)'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "health" -d 'Watch the free space left for backups on a device in state 1; below MIN_FREE, commit or abort and reboot, as configured'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "create" -d 'Create a bow device over DEVICE through the device-mapper ioctls'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "remove" -d 'Remove a bow device. In state 1 its checkpoint log stays on disk, for `bowctl restore` to roll back'
complete -c bowctl -n "__fish_bowctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bowctl -n "__fish_bowctl_using_subcommand inspect" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand restore" -l dry-run -d 'Print the plan and write nothing'
complete -c bowctl -n "__fish_bowctl_using_subcommand restore" -l roll-forward -d 'If the log is invalid, keep the new data and drop the checkpoint instead of refusing (Android\'s behaviour)'
complete -c bowctl -n "__fish_bowctl_using_subcommand restore" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand restore" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bowctl -n "__fish_bowctl_using_subcommand status" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand checkpoint" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand checkpoint" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand commit" -l record -d 'The update record: a file on a partition of its own, outside the protected device' -r -F
complete -c bowctl -n "__fish_bowctl_using_subcommand commit" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand commit" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand start" -l retries -d 'Boot attempts before the data is rolled back: 1 to 100, or `unlimited` (also -1, as vdc takes it): every boot retries until a commit or an abort' -r
complete -c bowctl -n "__fish_bowctl_using_subcommand start" -l record -d 'The update record: a file on a partition of its own, outside the protected device' -r -F
complete -c bowctl -n "__fish_bowctl_using_subcommand start" -l force -d 'Write the record even where the next boot may not find it: on the root filesystem (the record partition is not mounted) or on the device bow protects'
complete -c bowctl -n "__fish_bowctl_using_subcommand start" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand start" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand boot" -l name -d 'Name of the bow device' -r
complete -c bowctl -n "__fish_bowctl_using_subcommand boot" -s t -l type -d 'Filesystem type. Default: from the superblock (ext4, xfs, f2fs, btrfs)' -r
complete -c bowctl -n "__fish_bowctl_using_subcommand boot" -s o -l options -d 'Mount options, as mount(8)\'s -o' -r
complete -c bowctl -n "__fish_bowctl_using_subcommand boot" -l block-size -d 'The bow block size (the table\'s block_size option)' -r
complete -c bowctl -n "__fish_bowctl_using_subcommand boot" -l record -d 'The update record: a file on a partition of its own, outside the protected device' -r -F
complete -c bowctl -n "__fish_bowctl_using_subcommand boot" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand boot" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bowctl -n "__fish_bowctl_using_subcommand pending" -l record -d 'The update record: a file on a partition of its own, outside the protected device' -r -F
complete -c bowctl -n "__fish_bowctl_using_subcommand pending" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand pending" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand checkpointing" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand checkpointing" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand abort" -l record -d 'The update record: a file on a partition of its own, outside the protected device' -r -F
complete -c bowctl -n "__fish_bowctl_using_subcommand abort" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand abort" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand health" -l min-free -d 'The threshold, in bytes (K, M, G suffixes allowed)' -r
complete -c bowctl -n "__fish_bowctl_using_subcommand health" -l on-low -d 'What to do below the threshold: keep the new data (commit, as Android\'s vold does by default), or request a rollback (abort)' -r -f -a "commit\t'Commit: keep the new data'
abort\t'Request a rollback at the next boot'"
complete -c bowctl -n "__fish_bowctl_using_subcommand health" -l interval -d 'Seconds between checks' -r
complete -c bowctl -n "__fish_bowctl_using_subcommand health" -l record -d 'The update record: a file on a partition of its own, outside the protected device' -r -F
complete -c bowctl -n "__fish_bowctl_using_subcommand health" -l reboot -d 'After an abort, reboot into the rollback through the init system (sys.powerctl on Android, systemctl reboot under systemd, else reboot), never reboot(2)'
complete -c bowctl -n "__fish_bowctl_using_subcommand health" -l once -d 'Check once and exit'
complete -c bowctl -n "__fish_bowctl_using_subcommand health" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand health" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bowctl -n "__fish_bowctl_using_subcommand create" -l block-size -d 'Block size in bytes: a power of two from 512 to 4096 (the table\'s block_size option). Default: the device\'s logical block size' -r
complete -c bowctl -n "__fish_bowctl_using_subcommand create" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand create" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand remove" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c bowctl -n "__fish_bowctl_using_subcommand remove" -s h -l help -d 'Print help'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "inspect" -d 'Validate the log of a device or image and dump its chain. Writes nothing'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "restore" -d 'Validate the log, then roll the device back to its checkpoint (offline)'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "status" -d 'Show the live state of one bow device, or of all of them'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "checkpoint" -d 'Trim the mounted filesystem (FITRIM), then start a checkpoint (state 1)'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "commit" -d 'Commit a checkpoint (state 2): keep the new data, drop the backups, and close the pending update in the record'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "start" -d 'Request a checkpoint for the next boots: run when an update is installed. Writes the record; touches no device'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "boot" -d 'The one call an init script makes at every boot, before the data is used: rolls back, or sets up bow and checkpoints, or just mounts'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "pending" -d 'Whether an update is pending (vdc\'s needsCheckpoint): exit 0 if so, 3 if not'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "checkpointing" -d 'Whether a bow device is under a checkpoint, in state 1 (vdc\'s isCheckpointing): exit 0 if so, 3 if not'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "abort" -d 'Request a rollback at the next boot (the update failed)'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "health" -d 'Watch the free space left for backups on a device in state 1; below MIN_FREE, commit or abort and reboot, as configured'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "create" -d 'Create a bow device over DEVICE through the device-mapper ioctls'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "remove" -d 'Remove a bow device. In state 1 its checkpoint log stays on disk, for `bowctl restore` to roll back'
complete -c bowctl -n "__fish_bowctl_using_subcommand help; and not __fish_seen_subcommand_from inspect restore status checkpoint commit start boot pending checkpointing abort health create remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
