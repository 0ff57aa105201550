dnl Stand-ins for the few AOSP policy macros examples/android/sepolicy
dnl uses (te_macros, global_macros), written here from their documented
dnl meaning, so the policy can be compiled without an AOSP tree.
define(`r_dir_perms', `{ open getattr read search ioctl lock }')
define(`rw_dir_perms', `{ open getattr read search ioctl lock add_name remove_name write }')
define(`create_dir_perms', `{ open getattr read search ioctl lock add_name remove_name write create reparent rename rmdir setattr }')
define(`r_file_perms', `{ getattr open read ioctl lock map }')
define(`rw_file_perms', `{ getattr open read ioctl lock map write append }')
define(`create_file_perms', `{ getattr open read ioctl lock map write append create rename setattr unlink }')
define(`domain_auto_trans', `
allow $1 $2:file { getattr open read execute map };
allow $1 $3:process transition;
allow $3 $2:file { entrypoint open read execute getattr map };
allow $3 $1:process sigchld;
type_transition $1 $2:process $3;
')
