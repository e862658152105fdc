# bash completion for image-serve: install as
# /usr/share/bash-completion/completions/image-serve (make install does).
# It asks the binary itself for the words that may follow what is typed
# (urfave/cli's --generate-bash-completion), so it never goes stale.
_image_serve() {
  local cur words cword
  if declare -F _init_completion >/dev/null 2>&1; then
    _init_completion -n "=:" || return
  else
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
  fi
  local request=("${words[@]:0:$cword}")
  [[ "$cur" == -* ]] && request+=("$cur")
  local opts
  opts=$("${request[@]}" --generate-bash-completion 2>/dev/null)
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}
complete -o bashdefault -o default -F _image_serve image-serve
