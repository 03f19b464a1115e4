_pyctl_completion() {
    local IFS=$'\n'
    local response

    # The line up to the cursor, not COMP_WORDS: bash splits words at ':' (COMP_WORDBREAKS)
    # and image names hold one or two (harbor.local:8443/team/app:1).
    response=$(env COMP_LINE="${COMP_LINE:0:COMP_POINT}" COMP_WORDBREAKS="$COMP_WORDBREAKS" \
        _PYCTL_COMPLETE=bash_complete $1)

    for completion in $response; do
        IFS=',' read type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=($value)
        fi
    done

    return 0
}

_pyctl_completion_setup() {
    complete -o nosort -F _pyctl_completion pyctl
}

_pyctl_completion_setup;

