// passes: sym-lower-loops{newton3=maybe}
builtin.module {
}
