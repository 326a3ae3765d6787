# cmake -DOUT=<file> -DPARTS=<a;b;c> -P concat.cmake: writes the parts one
# after the other into OUT.
file(WRITE ${OUT} "")
foreach(part IN LISTS PARTS)
  file(READ ${part} text)
  file(APPEND ${OUT} "${text}\n")
endforeach()
