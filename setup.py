from setuptools import setup, find_packages

setup(
    name='registry-refcount',
    version='0.1.0',
    description='Reference counting and garbage collection for docker-registry 0.9.1',
    long_description=open('README.rst').read(),
    packages=find_packages(exclude=['tests', 'tests.*']),
    install_requires=['docker-registry-core>=2.0.3', 'PyYAML'],
    # tqdm (progress bars) is optional and not declared: the setuptools the
    # registry pins cannot read the markers in tqdm's metadata.
    extras_require={'test': ['pytest', 'hypothesis', 'requests']},
    entry_points={
        'docker_registry.extensions': [
            'refcount = registry_refcount.ext',
        ],
        'console_scripts': [
            'registry-refcount = registry_refcount.cli:main',
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 2.7',
        'Programming Language :: Python :: 3',
    ],
)
