# tokens.cmake — the o200k_base BPE vocabulary (D39) from the npm package tiktoken (the WASM build
# of OpenAI's reference tokenizer), embedded into ah_api for src/api/tokens.c. Included from the
# top-level CMakeLists.txt after ah_api exists.
set(AH_O200K ${CMAKE_SOURCE_DIR}/node_modules/tiktoken/encoders/o200k_base.json)
if(NOT EXISTS ${AH_O200K})
  message(FATAL_ERROR "node_modules/tiktoken is missing: run scripts/deps.sh (it installs the npm "
                      "packages of package-lock.json)")
endif()
ah_embed(${CMAKE_BINARY_DIR}/o200k.c api_o200k ${CMAKE_SOURCE_DIR}/node_modules/tiktoken/encoders
         ${AH_O200K})
target_sources(ah_api PRIVATE ${CMAKE_BINARY_DIR}/o200k.c)
