# Unit tests: one executable per tests/<layer>/test_*.c, registered with CTest
# under "<layer>/<name>". Integration tests: tests/integration/*.sh, run with
# DISTML pointing at the built binary. Python tests: tests/*/test_*.py.

file(GLOB_RECURSE DISTML_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/*/test_*.c)
foreach(source ${DISTML_UNIT_TESTS})
  get_filename_component(name ${source} NAME_WE)
  get_filename_component(dir ${source} DIRECTORY)
  get_filename_component(layer ${dir} NAME)
  add_executable(${layer}_${name} ${source})
  target_include_directories(${layer}_${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(${layer}_${name} PRIVATE distml_core)
  add_test(NAME ${layer}/${name} COMMAND ${layer}_${name})
  set_tests_properties(${layer}/${name} PROPERTIES
    ENVIRONMENT "DISTML_TEST_TMP=${CMAKE_BINARY_DIR}/test-tmp;OPENBLAS_NUM_THREADS=1"
    TIMEOUT 600)
endforeach()

file(GLOB DISTML_SHELL_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/*.sh)
foreach(script ${DISTML_SHELL_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME integration/${name} COMMAND sh ${script})
  set_tests_properties(integration/${name} PROPERTIES
    ENVIRONMENT "DISTML=$<TARGET_FILE:distml>;DISTML_TEST_TMP=${CMAKE_BINARY_DIR}/test-tmp;DISTML_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
    TIMEOUT 1200)
endforeach()

file(GLOB_RECURSE DISTML_PY_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/*/test_*.py)
foreach(script ${DISTML_PY_TESTS})
  get_filename_component(name ${script} NAME_WE)
  get_filename_component(dir ${script} DIRECTORY)
  get_filename_component(layer ${dir} NAME)
  add_test(NAME ${layer}/${name} COMMAND python3 ${script})
  set_tests_properties(${layer}/${name} PROPERTIES
    ENVIRONMENT "DISTML=$<TARGET_FILE:distml>;DISTML_TEST_TMP=${CMAKE_BINARY_DIR}/test-tmp;DISTML_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
    TIMEOUT 1200)
endforeach()
