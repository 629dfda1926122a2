# A package so these test modules cannot collide with same-named ones elsewhere under tests/.
