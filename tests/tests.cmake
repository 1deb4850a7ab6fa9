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

# Python tests run under DISTML_PYTHON. By default that is the first of
# python3 on PATH and /usr/bin/python3 that can import google.protobuf,
# because Debian's python3-protobuf (installed by scripts/bootstrap) serves
# only /usr/bin/python3, and a pyenv or virtualenv python3 earlier on PATH
# does not see it. DISTML_BUILD_DIR lets a test run the C test executables,
# which are built there as <layer>_<name>.
if(NOT DISTML_PYTHON)
  set(DISTML_PYTHON python3)
  foreach(candidate python3 /usr/bin/python3)
    execute_process(COMMAND ${candidate} -c "import google.protobuf"
                    RESULT_VARIABLE import_result OUTPUT_QUIET ERROR_QUIET)
    if(import_result EQUAL 0)
      set(DISTML_PYTHON ${candidate})
      break()
    endif()
  endforeach()
endif()

file(GLOB_RECURSE DISTML_PY_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/*/test_*.py)
foreach(script ${DISTML_PY_TESTS})
  get_filename_component(name ${script} NAME_WE)
  get_filename_component(dir ${script} DIRECTORY)
  get_filename_component(layer ${dir} NAME)
  add_test(NAME ${layer}/${name} COMMAND ${DISTML_PYTHON} ${script})
  set_tests_properties(${layer}/${name} PROPERTIES
    ENVIRONMENT "DISTML=$<TARGET_FILE:distml>;DISTML_TEST_TMP=${CMAKE_BINARY_DIR}/test-tmp;DISTML_SOURCE_DIR=${CMAKE_SOURCE_DIR};DISTML_BUILD_DIR=${CMAKE_BINARY_DIR}"
    TIMEOUT 1200)
endforeach()
