#compdef image-serve
# zsh completion for image-serve: install as _image-serve in a directory
# of $fpath (make install uses share/zsh/site-functions). It asks the
# binary for the words that may follow (--generate-bash-completion).
_image_serve() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _image_serve image-serve
